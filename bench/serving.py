"""The Peers and Profile sections of `make bench`: this service against LitServe and BentoML serving the same
Predictor, and where a request's time goes (py-spy's flame graph, each step's cost in process)."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's own modules, one folder up

from common import (
    cpu_seconds,
    fmt,
    launch,
    median_spread,
    per_call,
    stamp,
    wrk,
)
from digits.inference.forward import limit_threads
from digits.inference.predictor import Predictor

REFERENCE = "bench.reference_app:app"  # the bare upload endpoint: what HTTP alone costs
PEERS_BIN = ROOT / ".venv-peers" / "bin"  # made by `make bench` from bench/requirements-peers.txt


CONNECTIONS = 32


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    health: str = "/healthz"
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)

    @property
    def peer(self) -> str:
        return self.name.split(",")[0]


def servers(cores: int) -> list[Server]:
    """Every server in the Peers rotation; {port} is filled in at launch."""
    ours = [sys.executable, "serve.py", "--port", "{port}"]
    lit = [str(PEERS_BIN / "python"), "bench/peer_litserve.py", "--port", "{port}"]
    bento = [str(PEERS_BIN / "bentoml"), "serve", "--host", "127.0.0.1", "--port", "{port}"]
    return [
        Server(f"this service, `make run` ({cores} workers)", ours),
        Server("this service, 1 worker", [*ours, "--workers", "1"]),
        Server(
            "this service, 1 worker, MICRO_BATCH=1 (no batching)", [*ours, "--workers", "1"], env={"MICRO_BATCH": "1"}
        ),
        Server("bare upload endpoint, 1 worker", [sys.executable, "-m", "uvicorn", REFERENCE, "--port", "{port}"]),
        Server("LitServe, 1 inference worker", lit, "/health"),
        Server("LitServe, 2 inference workers", [*lit, "--workers", "2"], "/health"),
        Server("LitServe, 2 workers and 2 API servers", [*lit, "--workers", "2", "--api-servers", "2"], "/health"),
        Server("LitServe, fast queue (ZeroMQ)", [*lit, "--fast-queue"], "/health"),
        Server(
            "LitServe, batches of 32 within 5 ms",
            [*lit, "--max-batch-size", "32", "--batch-timeout", "0.005"],
            "/health",
        ),
        Server("BentoML, 1 worker", [*bento, "peer_bentoml:Digits"], cwd=ROOT / "bench"),
        Server("BentoML, 2 workers", [*bento, "peer_bentoml:Digits"], cwd=ROOT / "bench", env={"PEER_WORKERS": "2"}),
        Server(
            "BentoML, 2 workers of 4 threads",
            [*bento, "peer_bentoml:Digits"],
            cwd=ROOT / "bench",
            env={"PEER_WORKERS": "2", "PEER_THREADS": "4"},
        ),
        Server(
            "BentoML, adaptive batching (32, 10 ms) behind a front service",
            [*bento, "peer_bentoml:Front"],
            cwd=ROOT / "bench",
            env={"PEER_MAX_BATCH": "32", "PEER_MAX_LATENCY_MS": "10"},
        ),
    ]


def ensure_peers() -> None:
    if not (PEERS_BIN / "bentoml").exists():
        raise SystemExit("the peers' venv is missing: run `make bench`, which makes .venv-peers")


def predictor_seconds(png: bytes, repeats: int = 2000) -> float:
    """In process, one thread: the median time of Predictor.predict on one PNG, decode to answer."""
    limit_threads(1)
    predictor = Predictor()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(png)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def peers(image: Path, rounds: int, seconds: int) -> str:
    """This service against LitServe and BentoML serving the same Predictor, in rotation, on the same machine."""
    ensure_peers()
    cores = len(os.sched_getaffinity(0))
    rotation = servers(cores)
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in rotation}
    in_process: list[float] = []
    for r in range(rounds):
        for server in rotation[r % len(rotation) :] + rotation[: r % len(rotation)]:  # a new order each round
            with launch(server.command, server.health, server.cwd, server.env) as (url, proc):
                wrk(url + "/predict", image, 2, CONNECTIONS, mode="raw")  # warm-up
                before = cpu_seconds(proc.pid)
                result = wrk(url + "/predict", image, seconds, CONNECTIONS, mode="raw")
                result["cpu_per_1000"] = 1000 * (cpu_seconds(proc.pid) - before) / max(result["requests"], 1)
                result["errors"] = result["non_2xx"] + result["read_errors"] + result["timeouts"]
                runs[server.name].append(result)
            print(f"{server.name}: {result['rps']:,.0f}/s, p99 {result['p99_ms']:.1f} ms", flush=True)
        in_process.append(predictor_seconds(image.read_bytes()))

    def med(name: str, key: str) -> float:
        return median_spread([x[key] for x in runs[name]])[0]

    rows = [
        f"| {name} | {fmt([x['rps'] for x in results])} | {fmt([x['p50_ms'] for x in results], ' ms', 1)} | "
        f"{fmt([x['p99_ms'] for x in results], ' ms', 1)} | "
        f"{fmt([x['p99_ms'] / x['p50_ms'] for x in results], '×', 1)} | "
        f"{fmt([x['cpu_per_1000'] for x in results], ' s', 2)} | {sum(x['errors'] for x in results):,} |"
        for name, results in runs.items()
    ]
    make_run, one = rotation[0].name, rotation[1].name
    bare = rotation[3].name
    goals = []
    for peer in ("LitServe", "BentoML"):
        clean = [s.name for s in rotation if s.peer == peer and not any(x["errors"] for x in runs[s.name])]
        best = max(clean, key=lambda name: med(name, "rps"))
        ratios = [m["rps"] / b["rps"] for m, b in zip(runs[make_run], runs[best], strict=True)]
        verdict = (
            "met" if median_spread(ratios)[0] >= 3 and med(make_run, "p99_ms") <= med(best, "p99_ms") else "missed"
        )
        goals.append(
            f"| `make run` against {peer}'s best here ({best.split(', ', 1)[1]}) | **{fmt(ratios, '×', 2)}** "
            f"requests/s; p99 {med(make_run, 'p99_ms'):.1f} against {med(best, 'p99_ms'):.1f} ms | "
            f"3×, p99 no worse: **{verdict}** |"
        )
    limits = [1 / (1 / b["rps"] + t) for b, t in zip(runs[bare], in_process, strict=True)]
    close = [o["rps"] / limit for o, limit in zip(runs[one], limits, strict=True)]
    goals.append(
        "| 1 worker against 1 / (bare endpoint time + `Predictor` time), "
        f"{fmt([1000 / b['rps'] for b in runs[bare]], ' ms', 3)} "
        f"+ {fmt([t * 1000 for t in in_process], ' ms', 3)} per request: a limit of {fmt(limits, '/s')} | "
        f"**{fmt(close, '×', 2)}** | 0.9×: **{'met' if median_spread(close)[0] >= 0.9 else 'missed'}** |"
    )
    ours = [s.name for s in rotation if s.name.startswith("this service")]
    worst_tail = max(med(name, "p99_ms") / med(name, "p50_ms") for name in ours)
    goals.append(
        f"| p99 / p50 of this service, worst row | {worst_tail:.1f}× | "
        f"at most 3×: **{'met' if worst_tail <= 3 else 'missed'}** |"
    )
    return f"""## Against LitServe and BentoML
{stamp("peers", rounds, seconds)} Every server runs this project's `Predictor` with one thread and
answers the same fields (`bench/peer_litserve.py`, `bench/peer_bentoml.py`; the peers come from
`bench/requirements-peers.txt` in `.venv-peers`). wrk: one thread, {CONNECTIONS} connections, a 28×28 PNG as
the raw body, on the same {cores} cores as the server. The servers take turns, in a new order each round.
CPU is the server's processes' user and system time, all of them, per 1,000 requests; errors are non-2xx
answers, failed reads and timeouts over all rounds. The bare upload endpoint (`bench/reference_app.py`)
reads the body and answers a fixed JSON.

| server | requests/s | p50 | p99 | p99 / p50 | CPU per 1,000 requests | errors |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

A peer's best configuration is its fastest one without errors. Ratios are taken round by round.

| goal | measured | target |
| --- | --- | --- |
{chr(10).join(goals)}
"""


def step_costs(png: bytes, repeats: int) -> list[tuple[str, float]]:
    """What each step of a /predict request costs in process, in microseconds, one thread."""
    import asyncio
    import logging

    import anyio.to_thread
    from pydantic import TypeAdapter
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    from digits.feedback.ids import PredictionIds
    from digits.imaging.decode import decode
    from digits.imaging.fit import prepared
    from digits.imaging.groups import several_digits
    from digits.imaging.png import to_png
    from digits.service.observability import IN_PROGRESS, LATENCY, PREDICTIONS, REQUESTS
    from digits.service.schemas import PredictionOut

    limit_threads(1)
    predictor = Predictor()
    boundary = "bench-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n\r\n'.encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = Headers({"content-type": f"multipart/form-data; boundary={boundary}"})

    async def parse_multipart(n: int) -> None:
        async def stream() -> AsyncGenerator[bytes]:
            yield body

        for _ in range(n):
            await MultiPartParser(headers, stream()).parse()

    async def hand_offs(n: int) -> None:
        for _ in range(n):
            await anyio.to_thread.run_sync(int)

    image = decode(png)
    x = prepared(image)[0]
    p = predictor.predict(png)
    small = to_png(p.image)
    ids = PredictionIds(b"a bench secret of 32 bytes......", 3600)
    answer = PredictionOut(
        digit=p.digit,
        confidence=p.confidence,
        probabilities=p.probabilities,
        uncertain=p.uncertain,
        not_a_digit=p.not_a_digit,
        input_image="",
        hint=None,
        prediction_id=ids.issue(small, p.digit, p.confidence, predictor.sha256),
        model=predictor.model_id,
    )
    adapter = TypeAdapter(PredictionOut)
    log = logging.getLogger("bench.access")
    log.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115 - lives as long as the bench
    log.propagate = False
    log.setLevel(logging.INFO)
    batch = np.stack([x] * 32)

    def metrics() -> None:
        IN_PROGRESS.inc()
        IN_PROGRESS.dec()
        PREDICTIONS.labels("7").inc()
        REQUESTS.labels("/predict", "POST", "200").inc()
        LATENCY.labels("/predict").observe(0.01)

    def preprocess() -> None:
        several_digits(prepared(image)[1])

    def encode() -> None:
        adapter.dump_json(adapter.validate_python(answer))

    entry = {"ts": 0.0, "method": "POST", "path": "/predict", "endpoint": "/predict", "status": 200, "ms": 1.0}
    steps: list[tuple[str, Callable[[], object], int, int]] = [
        ("multipart parsing (Starlette's parser, one 28×28 PNG)", lambda: asyncio.run(parse_multipart(100)), 5, 100),
        ("decode (Pillow)", lambda: decode(png).load(), 500, 1),
        ("preprocessing (ink, crop, fit and centre, several-digit check)", preprocess, 500, 1),
        ("forward pass and softmax, alone", lambda: predictor.classify(x[None]), 500, 1),
        ("forward pass and softmax, per image in a batch of 32", lambda: predictor.classify(batch), 50, 32),
        ("answer: validation and JSON (pydantic, as FastAPI does it)", encode, 500, 1),
        ("the 28×28 PNG in the answer", lambda: to_png(p.image), 500, 1),
        ("signed prediction id", lambda: ids.issue(small, p.digit, p.confidence, predictor.sha256), 500, 1),
        ("metrics (prometheus-client, multiprocess mode)", metrics, 500, 1),
        ("access log line", lambda: log.info(json.dumps(entry)), 500, 1),
        ("a thread hand-off and back (AnyIO)", lambda: asyncio.run(hand_offs(100)), 5, 100),
    ]
    return [(name, per_call(fn, repeats, number) / per) for name, fn, number, per in steps]


def profile(image: Path, rounds: int, seconds: int, repeats: int) -> str:
    """py-spy's flame graph of one worker under load, the served CPU per request, and each step's cost in process."""
    ensure_peers()
    svg = Path(__file__).resolve().parent / "profile.svg"
    served: list[float] = []
    bare: list[float] = []
    for _ in range(rounds):
        for cost, command in (
            (bare, [sys.executable, "-m", "uvicorn", REFERENCE, "--port", "{port}"]),
            (served, [sys.executable, "serve.py", "--port", "{port}", "--workers", "1"]),
        ):
            with launch(command, "/healthz") as (url, proc):
                wrk(url + "/predict", image, 2, CONNECTIONS, mode="raw")
                before = cpu_seconds(proc.pid)
                result = wrk(url + "/predict", image, seconds, CONNECTIONS, mode="raw")
                cost.append(1e6 * (cpu_seconds(proc.pid) - before) / result["requests"])
    with launch([sys.executable, "serve.py", "--port", "{port}", "--workers", "1"], "/healthz") as (url, proc):
        wrk(url + "/predict", image, 2, CONNECTIONS, mode="raw")
        load = threading.Thread(
            target=wrk, args=(url + "/predict", image, seconds + 4, CONNECTIONS), kwargs={"mode": "raw"}
        )
        load.start()
        time.sleep(2)
        spy = [str(PEERS_BIN / "py-spy"), "record", "--pid", str(proc.pid), "--duration", str(seconds)]
        subprocess.run([*spy, "--rate", "250", "--nonblocking", "--output", str(svg)], check=True, capture_output=True)
        load.join()
    with tempfile.TemporaryDirectory() as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # as serve.py runs the workers
        steps = step_costs(image.read_bytes(), repeats)
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    served_us, bare_us = median_spread(served)[0], median_spread(bare)[0]
    rows = [f"| {name} | {us:,.1f} µs |" for name, us in steps]
    return f"""## Where the time goes
{stamp("profile", rounds, seconds)}

[profile.svg](profile.svg) is py-spy's flame graph of one worker (`python serve.py --workers 1`) under
wrk's {CONNECTIONS} connections for {seconds} s, raw 28×28 PNGs: the event loop's thread and the inference thread.

Served, the worker spends **{fmt(served, " µs", 0)}** of CPU per request (user and system time over the
run), and the bare upload endpoint {fmt(bare, " µs", 0)}, which is the HTTP server, routing and reading the
body. In process, each step of a request costs (median of {repeats} repeats):

| step | per request |
| --- | --- |
{chr(10).join(rows)}

Under load, /predict's uploads share a forward pass and a thread hand-off per micro-batch (`batcher.py`),
so those two steps cost their batched share; what the bare endpoint doesn't do costs
{served_us - bare_us:,.0f} µs a request here.
"""
