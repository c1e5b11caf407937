"""Benchmarks: serving against a bare FastAPI reference, photo-sized input, batches, cold start, threads,
in-process Predictor throughput, training throughput and whole training runs. Writes bench/RESULTS.md.

    python bench/bench.py             # or `make bench`: about 30 minutes on 2 cores, half of it training
    python bench/bench.py --quick     # fewer and shorter runs, to try things out (the training runs stay whole)
    python bench/bench.py --only workers   # re-measure one section, in place in RESULTS.md

Every figure is the median of several runs, with the spread (min–max) beside it; every comparison
is a ratio of two figures measured in the same run, the two sides alternating. wrk is the load
generator, since a Python client would be the bottleneck on 2 cores. One uvicorn worker, loopback only,
but for the Workers section, which runs serve.py as `make run` does.
"""

import argparse
import datetime
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's own modules, one folder up

from common import (
    cpu_seconds,
    digit_png,
    ensure_wrk,
    free_port,
    launch,
    machine,
    median_spread,
    serve,
    wait_healthy,
    wrk,
)
from digits.inference.predictor import Predictor
from digits.training import dataset
from digits.training.report import phone_photo
from predict import CHUNK, read_files

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
REFERENCE = "bench.reference_app:app"


def fmt(values: list[float], unit: str = "", digits: int = 0) -> str:
    med, lo, hi = median_spread(values)
    return f"{med:,.{digits}f}{unit} ({lo:,.{digits}f}–{hi:,.{digits}f})"


def post(url: str, data: bytes, content_type: str = "image/png") -> float:
    """Seconds for one POST, checking the answer is a 200."""
    start = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers={"Content-Type": content_type})) as r:
        r.read()
        assert r.status == 200
    return time.perf_counter() - start


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
    """In process, one torch thread: the median time of Predictor.predict on one PNG, decode to answer."""
    torch.set_num_threads(1)
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
            "met" if median_spread(ratios)[0] >= 2 and med(make_run, "p99_ms") <= med(best, "p99_ms") else "missed"
        )
        goals.append(
            f"| `make run` against {peer}'s best here ({best.split(', ', 1)[1]}) | **{fmt(ratios, '×', 2)}** "
            f"requests/s; p99 {med(make_run, 'p99_ms'):.1f} against {med(best, 'p99_ms'):.1f} ms | "
            f"2×, p99 no worse: **{verdict}** |"
        )
    limits = [1 / (1 / b["rps"] + t) for b, t in zip(runs[bare], in_process, strict=True)]
    close = [o["rps"] / limit for o, limit in zip(runs[one], limits, strict=True)]
    goals.append(
        "| 1 worker against 1 / (bare endpoint time + `Predictor` time), "
        f"{fmt([1000 / b['rps'] for b in runs[bare]], ' ms', 3)} "
        f"+ {fmt([t * 1000 for t in in_process], ' ms', 3)} per request: a limit of {fmt(limits, '/s')} | "
        f"**{fmt(close, '×', 2)}** | 0.8×: **{'met' if median_spread(close)[0] >= 0.8 else 'missed'}** |"
    )
    ours = [s.name for s in rotation if s.name.startswith("this service")]
    worst_tail = max(med(name, "p99_ms") / med(name, "p50_ms") for name in ours)
    goals.append(
        f"| p99 / p50 of this service, worst row | {worst_tail:.1f}× | "
        f"at most 3×: **{'met' if worst_tail <= 3 else 'missed'}** |"
    )
    return f"""## Against LitServe and BentoML
{stamp("peers", rounds, seconds)} Every server runs this project's `Predictor` with one torch thread and
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


def stamp(section: str, rounds: int, seconds: int = 0, unit: str = "runs") -> str:
    """Where, when and how a section was measured: rounds of `seconds` each, or of one `unit` each."""
    each = f"{unit} of {seconds} s" if seconds else unit
    return (
        f"Measured {datetime.date.today()} on {machine()}, with `python bench/bench.py --only {section}`. "
        f"Medians of {rounds} {each}, with the spread (min–max) in brackets."
    )


def per_call(fn: Callable[[], object], repeats: int, number: int = 500) -> float:
    """Microseconds per call: the median over repeats of the mean of number calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return float(np.median(times)) * 1e6


def step_costs(png: bytes, repeats: int) -> list[tuple[str, float]]:
    """What each step of a /predict request costs in process, in microseconds, one torch thread."""
    import asyncio
    import json
    import logging

    import anyio.to_thread
    from pydantic import TypeAdapter
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    from digits.feedback.ids import PredictionIds
    from digits.imaging.decode import decode
    from digits.imaging.fit import fit_and_centre
    from digits.imaging.groups import several_digits
    from digits.imaging.ink import ink_map
    from digits.imaging.png import to_png
    from digits.service.observability import IN_PROGRESS, LATENCY, PREDICTIONS, REQUESTS
    from digits.service.schemas import PredictionOut

    torch.set_num_threads(1)
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
    ink = ink_map(image)
    x = fit_and_centre(ink)
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
        fit_and_centre(ink_map(image))
        several_digits(ink)

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
    svg = RESULTS.parent / "profile.svg"
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


def workers(image: Path, rounds: int, seconds: int) -> str:
    """The Workers section: serve.py with one worker against its default of one per core, alternating."""
    cores = len(os.sched_getaffinity(0))
    runs: dict[int, list[dict[str, Any]]] = {1: [], cores: []}
    for r in range(rounds):
        for n in (1, cores) if r % 2 == 0 else (cores, 1):
            with serve(workers=n) as (url, _):
                wrk(url + "/predict", image, 2, 64, mode="raw")  # warm-up
                runs[n].append(wrk(url + "/predict", image, seconds, 64, mode="raw"))
    for n, results in runs.items():
        errors = sum(x["non_2xx"] + x["read_errors"] + x["timeouts"] for x in results)
        assert errors == 0, f"{errors} failed requests with {n} workers"
    ratios = [m["rps"] / one["rps"] for m, one in zip(runs[cores], runs[1], strict=True)]
    rows = [
        f"| {n}{' (the default)' if n == cores else ''} | {fmt([x['rps'] for x in results])} | "
        f"{fmt([x['p50_ms'] for x in results], ' ms', 1)} | {fmt([x['p99_ms'] for x in results], ' ms', 1)} | "
        f"{'1×' if n == 1 else '**' + fmt(ratios, '×', 2) + '**'} |"
        for n, results in runs.items()
    ]
    return f"""## Workers
{stamp("workers", rounds, seconds)}
`python serve.py` (`make run`) with one worker, and with its default of one per core ({cores} here), in
rotation: 64 connections, a 28×28 PNG as the raw body, wrk with one thread on the same {cores} cores.
Goal: the default at least 1.8× one worker.

| workers | /predict requests/s | p50 | p99 | against one worker |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}
"""


def folder(rounds: int) -> str:
    """The Folder section: `python predict.py DIR` on every core, against Predictor on one core in process."""

    cores = len(os.sched_getaffinity(0))
    images = dataset.load(train=False)[0].numpy()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i, image in enumerate(images):
            path = root / "scans" / f"{i // 1000}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
        paths = sorted((root / "scans").rglob("*.png"))
        for copy in range(10):  # 100,000 files for the memory reading: the same scans ten times over, linked
            for path in paths:
                link = root / "many" / str(copy) / path.relative_to(root / "scans")
                link.parent.mkdir(parents=True, exist_ok=True)
                link.hardlink_to(path)
        torch.set_num_threads(1)
        predictor = Predictor()
        in_process, cli, steady = [], [], []
        for _ in range(rounds):
            start = time.perf_counter()
            for i in range(0, len(paths), CHUNK):
                read_files(predictor, paths[i : i + CHUNK])
            in_process.append(len(paths) / (time.perf_counter() - start))
            start = time.perf_counter()
            command = [sys.executable, "predict.py", str(root / "scans"), "--format", "jsonl"]
            with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE) as proc:
                assert proc.stdout is not None
                proc.stdout.readline()
                first = time.perf_counter()
                lines = 1 + sum(1 for _ in proc.stdout)
            end = time.perf_counter()
            if proc.returncode or lines != len(paths):
                raise RuntimeError(f"predict.py exited {proc.returncode} after {lines} of {len(paths)} lines")
            cli.append(len(paths) / (end - start))
            steady.append((lines - 1) / (end - first))
        peak = {}
        for name, n in (("scans", 10_000), ("many", 100_000)):
            timed = ["/usr/bin/time", "-f", "%M", sys.executable, "predict.py", str(root / name), "--format", "csv"]
            done = subprocess.run(timed, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            peak[n] = int(done.stderr.split()[-1]) / 1024
    ratios = [c / (cores * i) for c, i in zip(cli, in_process, strict=True)]
    steady_ratios = [c / (cores * i) for c, i in zip(steady, in_process, strict=True)]
    return f"""## A folder of scans
{stamp("folder", rounds, unit="rounds")}
`python predict.py DIR --format jsonl` with its default of one worker per core ({cores} here) on 10,000
MNIST test digits as PNG files, against `Predictor` reading the same files in process on one core, in
chunks of 256 as each worker does. The command is timed whole (starting Python and importing torch, about
1.5 s, included), and from its first line of output to its last. Goal: at least 0.8 × {cores} × the one-core
rate.

| `Predictor`, 1 core, in process | `predict.py DIR`, whole | ratio | `predict.py DIR`, once started | ratio |
| --- | --- | --- | --- | --- |
| {fmt(in_process, " files/s")} | {fmt(cli, " files/s")} | **{fmt(ratios, "×", 2)}** | \
{fmt(steady, " files/s")} | **{fmt(steady_ratios, "×", 2)}** |

The command's peak memory (the main process, which orders and prints the results): {peak[10_000]:.0f} MB for
10,000 files, {peak[100_000]:.0f} MB for 100,000.
"""


def replace_section(report: str, section: str) -> str:
    """The report with the section of the same heading swapped for this one, or added at the end."""
    heading = section.split("\n", 1)[0]
    start = report.find(heading + "\n")
    if start < 0:
        return report.rstrip("\n") + "\n\n" + section
    end = report.find("\n## ", start + len(heading))
    return report[:start] + section.rstrip("\n") + ("\n" + report[end:] if end >= 0 else "\n")


def big_inputs(repeats: int) -> list[str]:
    """/predict latency on a phone photo and a 1000x1000 PNG, against Pillow fully decoding the same file."""
    photo = phone_photo(dataset.load(train=False)[0][0].numpy())
    with tempfile.TemporaryDirectory() as tmp:
        png = digit_png(Path(tmp) / "big.png", size=1000).read_bytes()
    rows = []
    with serve() as (url, _):
        for name, data, ctype in [("4000×3000 JPEG photo", photo, "image/jpeg"), ("1000×1000 PNG", png, "image/png")]:
            post(url + "/predict", data, ctype)  # warm-up
            decode, served = [], []
            for _ in range(repeats):  # alternate the two sides
                start = time.perf_counter()
                Image.open(io.BytesIO(data)).load()
                decode.append(time.perf_counter() - start)
                served.append(post(url + "/predict", data, ctype))
            ratios = [s / d for s, d in zip(served, decode, strict=True)]
            rows.append(
                f"| {name} ({len(data) / 1e6:.1f} MB) | {fmt([s * 1000 for s in served], ' ms', 1)} | "
                f"{fmt([d * 1000 for d in decode], ' ms', 1)} | **{fmt(ratios, '×', 2)}** |"
            )
    return rows


def number_strip(digits: list[np.ndarray], gap: int) -> np.ndarray:
    """MNIST digits cropped to their ink and set side by side, gap pixels apart; a negative gap overlaps them."""
    crops = [d[:, d.any(0)] for d in digits]
    strip = np.zeros((28, sum(c.shape[1] for c in crops) + gap * (len(crops) - 1)), np.uint8)
    x = 0
    for c in crops:
        np.maximum(strip[:, x : x + c.shape[1]], c, out=strip[:, x : x + c.shape[1]])
        x += c.shape[1] + gap
    return np.pad(strip, 4)


def numbers(repeats: int) -> list[str]:
    """/predict/number on a 4-digit phone photo, against /predict on the same bytes, alternating."""
    images, labels = dataset.load(train=False)
    digits, truth = [d.numpy() for d in images[10:14]], "".join(str(int(y)) for y in labels[10:14])
    rows = []
    with serve() as (url, _):
        for name, gap in [("apart", 4), ("touching, overlapping by 1 px of 28", -1)]:
            photo = phone_photo(number_strip(digits, gap))
            request = urllib.request.Request(
                url + "/predict/number", data=photo, headers={"Content-Type": "image/jpeg"}
            )
            with urllib.request.urlopen(request) as r:  # the warm-up says what was read
                read = json.load(r)["number"]
            single, number = [], []
            for _ in range(repeats):
                single.append(post(url + "/predict", photo, "image/jpeg"))
                number.append(post(url + "/predict/number", photo, "image/jpeg"))
            ratios = [n / s for n, s in zip(number, single, strict=True)]
            rows.append(
                f"| {name} | {truth} read as {read} | {fmt([n * 1000 for n in number], ' ms', 1)} | "
                f"{fmt([s * 1000 for s in single], ' ms', 1)} | **{fmt(ratios, '×', 2)}** |"
            )
    return rows


def batches(image: Path, rounds: int, seconds: int) -> list[str]:
    """Images/s through /predict/batch (256 PNGs a request) against single /predict calls, same server."""
    single, batch = [], []
    with serve() as (url, _):
        wrk(url + "/predict/batch", image, 2, 2, field="files", count=256)  # warm-up
        for _ in range(rounds):
            single.append(wrk(url + "/predict", image, seconds, 32)["rps"])
            b = wrk(url + "/predict/batch", image, seconds, 2, field="files", count=256)
            assert b["non_2xx"] == 0
            batch.append(b["rps"] * 256)
    ratios = [b / s for b, s in zip(batch, single, strict=True)]
    return [f"| {fmt(batch, ' images/s')} | {fmt(single, ' images/s')} | **{fmt(ratios, '×', 1)}** |"]


def cold_start(repeats: int) -> list[str]:
    """Launch of `uvicorn main:app` to the first 200 from /healthz, against `python -c "import torch, fastapi"`."""
    server, imports = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, fastapi"], check=True)
        imports.append(time.perf_counter() - start)
        port = free_port()
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc)
            server.append(time.perf_counter() - start)
        finally:
            proc.terminate()
            proc.wait()
    ratios = [s / i for s, i in zip(server, imports, strict=True)]
    return [f"| {fmt(server, ' s', 2)} | {fmt(imports, ' s', 2)} | {fmt(ratios, '×', 2)} |"]


def threads(image: Path, rounds: int, seconds: int) -> list[str]:
    """The server with more torch intra-op threads, or more threadpool threads: single requests and batches."""
    rows = []
    for torch_threads, pool in ((1, 1), (2, 1), (1, 2), (1, 40)):
        single, tail, batch = [], [], []
        env = {"TORCH_THREADS": str(torch_threads), "THREADPOOL_SIZE": str(pool)}
        with serve(env=env) as (url, _):
            wrk(url + "/predict", image, 2, 32)
            for _ in range(rounds):
                r = wrk(url + "/predict", image, seconds, 32)
                single.append(r["rps"])
                tail.append(r["p99_ms"])
                batch.append(wrk(url + "/predict/batch", image, seconds, 2, field="files", count=256)["rps"] * 256)
        rows.append(
            f"| {torch_threads} | {pool} | {fmt(single, '/s')} | {fmt(tail, ' ms', 1)} | {fmt(batch, ' images/s')} |"
        )
    return rows


def in_process(repeats: int) -> tuple[list[str], float]:
    """Predictor: decode + preprocess per image, and the model forward per batch, on 28x28 PNGs.
    Also returns the median seconds per image at batch 1, everything included."""

    torch.set_num_threads(1)  # as the server runs it
    predictor = Predictor()
    with tempfile.TemporaryDirectory() as tmp:
        png = digit_png(Path(tmp) / "seven.png").read_bytes()
    rows = []
    for size in (1, 32, 256):
        uploads = [png] * size
        prep, forward, total = [], [], []
        for _ in range(repeats):
            start = time.perf_counter()
            images = np.stack([predictor.prepare(u)[0] for u in uploads])
            mid = time.perf_counter()
            predictor.classify(images)
            end = time.perf_counter()
            prep.append(size / (mid - start))
            forward.append(size / (end - mid))
            total.append(size / (end - start))
        rows.append(f"| {size} | {fmt(prep)} | {fmt(forward)} | {fmt(total)} |")
        if size == 1:
            single = 1 / median_spread(total)[0]
    return rows, single


def training(repeats: int) -> list[str]:
    """train.py's epoch (augmentation, EMA, schedule) against a bare forward/backward loop on in-memory tensors,
    with one torch thread and with two."""
    import torch.nn.functional as F
    from torch.optim.swa_utils import AveragedModel

    from digits.imaging.fit import normalize
    from digits.training import dataset
    from digits.training.loop import ema_update, train_one_epoch
    from digits.training.recipe import preset
    from digits.training.splits import to_float
    from model import MLP

    args = preset("fast")  # the default augmentation, without the teacher
    images, labels = dataset.load(train=True)
    x, y = to_float(images[:55_000], torch.device("cpu")), labels[:55_000]
    g = torch.Generator().manual_seed(0)
    rows = []
    before = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        full, bare = [], []
        for _ in range(repeats):
            model = MLP(dropout=0.1)
            ema = AveragedModel(model, multi_avg_fn=ema_update(args.ema_decay))
            opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=10_000)
            start = time.perf_counter()
            train_one_epoch(model, ema, opt, sched, x, y, args, g, None, "bench", quiet=True)
            full.append(len(x) / (time.perf_counter() - start))

            model = MLP(dropout=0.1)
            opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
            xn = normalize(x)
            start = time.perf_counter()
            for idx in torch.randperm(len(x)).split(args.batch_size):
                loss = F.cross_entropy(model(xn[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            bare.append(len(x) / (time.perf_counter() - start))
        overhead = [b / f - 1 for f, b in zip(full, bare, strict=True)]
        rows.append(
            f"| {threads} | {fmt(full, ' images/s')} | {fmt(bare, ' images/s')} | "
            f"**{fmt([o * 100 for o in overhead], '%')}** |"
        )
    torch.set_num_threads(before)
    return rows


def time_to_accuracy() -> list[str]:
    """Wall time of whole train.py runs, data loading to written weights; the default recipe takes about 13 minutes."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in (["--fast"], []):
            start = time.perf_counter()
            out = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "train.py"),
                    *recipe,
                    "--quiet",
                    "--out",
                    str(Path(tmp) / "bench.safetensors"),
                    "--report",
                    str(Path(tmp) / "report"),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            wall = time.perf_counter() - start
            found = re.search(r"best validation accuracy .*test accuracy ([\d.]+)%", out)
            if found is None:
                raise RuntimeError(f"train.py printed no test accuracy: {out[-500:]}")
            acc = found.group(1)
            name = " ".join(["python train.py", *recipe])
            rows.append(f"| `{name}` | {wall / 60:.1f} min | {acc}% |")
    return rows


def big_inputs_section(repeats: int) -> str:
    return f"""## Photo-sized input
{stamp("photo", repeats, unit="requests")} One request at a time, raw body; Pillow's
full decode of the same bytes alternates with it. Goal for the photo: /predict in under half the time of the
full decode (JPEG draft mode decodes at 1/8 scale).

| input | /predict | Pillow full decode | ratio |
| --- | --- | --- | --- |
{chr(10).join(big_inputs(repeats))}
"""


def numbers_section(repeats: int) -> str:
    return f"""## Whole numbers
{stamp("number", repeats, unit="requests")} One request at a time, raw body:
/predict/number on a 4000×3000 JPEG photo of four MNIST test digits, alternating with /predict on the same
bytes. Goal: under 2×.

| digits | number | /predict/number | /predict | ratio |
| --- | --- | --- | --- | --- |
{chr(10).join(numbers(repeats))}
"""


def batches_section(image: Path, rounds: int, seconds: int) -> str:
    return f"""## Batches
{stamp("batches", rounds, seconds)} /predict/batch with 256 PNGs per request (2 connections) against single
/predict calls (32 connections, micro-batched), on the same server. Goal: at least 5×.

| /predict/batch | single /predict | ratio |
| --- | --- | --- |
{chr(10).join(batches(image, rounds, seconds))}
"""


def cold_start_section(repeats: int) -> str:
    return f"""## Cold start
{stamp("cold", repeats, unit="launches")} Launching `uvicorn main:app` to its first
200 from /healthz, against `python -c "import torch, fastapi"`.

| server ready | import torch, fastapi | ratio |
| --- | --- | --- |
{chr(10).join(cold_start(repeats))}
"""


def threads_section(image: Path, rounds: int, seconds: int) -> str:
    return f"""## Threads in the server
{stamp("threads", rounds, seconds)} `TORCH_THREADS` (torch intra-op threads, default 1) and `THREADPOOL_SIZE`
(threads running the sync endpoints, such as /predict/batch, default 1; 40 is AnyIO's own default; /predict's
micro-batches have a thread of their own): single requests at 32 connections (multipart), and 256-image batches.

| torch threads | threadpool | /predict requests/s | p99 | /predict/batch |
| --- | --- | --- | --- | --- |
{chr(10).join(threads(image, rounds, seconds))}
"""


def in_process_section(repeats: int) -> str:
    rows, _ = in_process(repeats)
    return f"""## In process: `Predictor`, images/s
{stamp("in-process", repeats, unit="repeats")} One torch thread, as in the server;
28×28 PNGs.

| batch | decode + preprocess | model forward | both |
| --- | --- | --- | --- |
{chr(10).join(rows)}
"""


def training_section(repeats: int) -> str:
    return f"""## Training
{stamp("training", repeats, unit="epochs")} One epoch of 55,000 images, batch 128:
train.py's loop (augmentation on the batch, EMA, schedule) against a bare forward/backward loop of the same
model on tensors already in memory, both with the same number of torch threads. Goal: at most 40% on top.

| torch threads | train.py | bare loop | cost on top |
| --- | --- | --- | --- |
{chr(10).join(training(repeats))}

Whole runs of train.py on this CPU (seed 0, default threads): data loading, every epoch's validation,
calibration, the report and the weights included. The goal is 99.0% on the test set.

| command | wall time | test accuracy |
| --- | --- | --- |
{chr(10).join(time_to_accuracy())}
"""


HEADER = """# Benchmark results

Written by `python bench/bench.py` (`make bench`); `--only SECTION ...` re-measures sections in place. Each
section says when, where and how it was measured. Every figure is a median of several runs with the spread
(min–max) in brackets, and every ratio is taken run by run, between figures measured side by side. Servers
listen on 127.0.0.1; wrk (`bench/wrk.lua`) shares the machine's cores with them.
"""


def main() -> None:
    sections = [
        "peers",
        "profile",
        "workers",
        "folder",
        "photo",
        "number",
        "batches",
        "cold",
        "threads",
        "in-process",
        "training",
    ]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs (default: off)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sections,
        default=sections,
        metavar="SECTION",
        help=f"measure only these sections, replacing them in RESULTS.md: {', '.join(sections)} (default: all)",
    )
    args = parser.parse_args()
    rounds, seconds, repeats = (2, 4, 3) if args.quick else (3, 10, 7)
    ensure_wrk()
    report = RESULTS.read_text() if RESULTS.exists() else HEADER
    report = HEADER + report[report.find("\n## ") + 1 :] if "\n## " in report else HEADER
    with tempfile.TemporaryDirectory() as tmp:
        image = digit_png(Path(tmp) / "seven.png")
        measure: dict[str, Callable[[], str]] = {
            "peers": lambda: peers(image, rounds, seconds),
            "profile": lambda: profile(image, rounds, seconds, repeats),
            "workers": lambda: workers(image, rounds, seconds),
            "folder": lambda: folder(rounds),
            "photo": lambda: big_inputs_section(repeats),
            "number": lambda: numbers_section(max(repeats, 15)),
            "batches": lambda: batches_section(image, rounds, seconds),
            "cold": lambda: cold_start_section(min(repeats, 5)),
            "threads": lambda: threads_section(image, rounds, seconds),
            "in-process": lambda: in_process_section(repeats),
            "training": lambda: training_section(3),
        }
        for name in args.only:
            section = measure[name]()
            report = replace_section(report, section)
            RESULTS.write_text(report)  # section by section, so that a long run keeps what it measured
            print(section, flush=True)


if __name__ == "__main__":
    main()
