"""Hostile inputs: what each costs the service in CPU and memory, and the service's bounds held under attack.

    python bench/hostile.py                  # both sections; writes bench/HOSTILE.md
    python bench/hostile.py --only cost      # each input's CPU and memory in process, /predict and /predict/number
    python bench/hostile.py --only service   # the attacks on `serve.py --workers 2`, as the issues measured them

The inputs are bench/hostile_files.py's CORPUS. The attackers are four clients, each its own address to the
service (X-Forwarded-For, from the loopback proxy serve.py trusts), as four machines on the internet would be.
"""

import argparse
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import machine, serve, tree_rss_mb
from digits.imaging.decode import decode_cost
from digits.imaging.errors import ImageError
from digits.imaging.png import encode
from digits.inference.predictor import Predictor
from digits.inference.segment import read_number
from digits.service.answers import CHEAP_BYTES, CHEAP_MS
from digits.training.report import phone_photo
from hostile_files import CORPUS, with_digit

OUT = Path(__file__).resolve().parent / "HOSTILE.md"


def _status_kb(field: str) -> int:
    line = next(row for row in Path("/proc/self/status").read_text().splitlines() if row.startswith(field + ":"))
    return int(line.split()[1])


def _cost(predictor: Predictor, data: bytes, number: bool) -> tuple[float, float, str]:
    """CPU seconds and peak extra memory (MB) of one prediction in this process."""
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from what is resident now
    before = _status_kb("VmRSS")
    start = time.process_time()
    try:
        outcome = read_number(predictor, data).number if number else str(predictor.predict(data).digit)
    except ImageError as e:
        outcome = type(e).__name__
    cpu = time.process_time() - start
    return cpu, max(0, _status_kb("VmHWM") - before) / 1024, outcome


def measure_cost(runs: int) -> str:
    """Each input's CPU and memory on /predict's path and /predict/number's, medians of `runs`."""
    predictor = Predictor()
    lines = [
        "| input | bytes | /predict CPU | peak memory | /predict/number CPU | answer (/predict, number) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for h in CORPUS:
        data = h.make()
        once = 1 if h.sandbox_only else runs  # seconds each: the sandbox's deadline is what bounds it in service
        single = [_cost(predictor, data, False) for _ in range(once)]
        number = [_cost(predictor, data, True) for _ in range(once)]
        cpu = statistics.median(c for c, _, _ in single) * 1000
        mb = statistics.median(m for _, m, _ in single)
        cpu_n = statistics.median(c for c, _, _ in number) * 1000
        lines.append(
            f"| {h.name} | {len(data):,} | {cpu:.0f} ms | {mb:.0f} MB | {cpu_n:.0f} ms "
            f"| {single[0][2]}, {number[0][2]} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


def _post(
    url: str, data: bytes, ctype: str = "image/png", timeout: float = 30, client: str | None = None
) -> tuple[int, bytes]:
    """POST data; `client` is the address the service is told it comes from."""
    headers = {"Content-Type": ctype, **({"X-Forwarded-For": client} if client else {})}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def measure_service() -> str:
    """The issues' attacks on `serve.py --workers 2`: memory after bombs, isolation, and the /feedback bounds."""
    seven = encode(np.asarray(with_digit("L", 280).resize((28, 28))))
    photo = phone_photo(255 - np.asarray(with_digit("L", 28)))
    lines = ["| goal | measured |", "| --- | --- |"]
    database = f"sqlite:///{tempfile.mkdtemp(prefix='hostile-')}/feedback.db"  # no earlier run's corrections
    with serve(workers=2, env={"DATABASE_URL": database}) as (url, proc):
        time.sleep(5)  # the sandboxes' processes ready
        baseline = tree_rss_mb(proc.pid)
        scans = next(h for h in CORPUS if h.sandbox_only)
        worst = scans.make()
        largest = next(h for h in CORPUS if h.name.startswith("progressive JPEG of 6324"))  # 115 MB to read
        biggest = largest.make()
        peaks = [baseline]
        sampling = threading.Event()

        def sample() -> None:  # the tree's memory every 20 ms, the sandboxes' peaks included
            while not sampling.is_set():
                peaks.append(tree_rss_mb(proc.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()

        def bombs(client: int) -> None:  # the costliest to decode, and the largest to hold, in turn
            for i in range(10):
                _post(
                    url + "/predict",
                    worst if i % 2 else biggest,
                    "application/octet-stream",
                    client=f"198.51.100.{client}",
                )

        senders = [threading.Thread(target=bombs, args=(c,)) for c in range(4)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        sampling.set()
        sampler.join()
        time.sleep(30)
        after = tree_rss_mb(proc.pid)
        lines.append(
            f"| 4 clients sending 5 {scans.name} and 5 {largest.name} each, at once: RSS under baseline + 1 GB, "
            f"back under + 300 MB in 30 s | peak +{max(peaks) - baseline:.0f} MB, +{after - baseline:.0f} MB "
            "after 30 s |"
        )
        # The costliest input known, read in the sandbox until it is killed; and the costliest of those cheap
        # enough to be prepared on the model's thread with the micro-batch (answers.CHEAP_MS).
        predictor = Predictor()
        made = {h.name: h.make() for h in CORPUS if not h.sandbox_only}
        cpu = {name: _cost(predictor, data, False)[0] for name, data in made.items()}
        cheap = max(
            (h for h in CORPUS if h.name in made and len(made[h.name]) <= CHEAP_BYTES
             and decode_cost(made[h.name]) <= CHEAP_MS),
            key=lambda h: cpu[h.name],
        )  # fmt: skip
        latencies = _under_attack(url, worst, {"28×28 PNG": (seven, 0.1), "phone photo": (photo, 1.0)}, 20)
        for name, goals in (("28×28 PNG", "p50 ≤ 100 ms"), ("phone photo", "p50 ≤ 1 s, p90 ≤ 3 s")):
            p50, p90 = np.percentile(latencies[name], [50, 90]) * 1000
            lines.append(
                f"| a {name} every {'100 ms' if name.startswith('28') else 's'} while 4 clients loop on "
                f"{scans.name} (killed at 0.5 s of CPU) for 20 s: {goals} | p50 {p50:.0f} ms, p90 {p90:.0f} ms "
                f"({len(latencies[name])} requests) |"
            )
        latencies = _under_attack(url, made[cheap.name], {"28×28 PNG": (seven, 0.1)}, 15)
        p50, p90 = np.percentile(latencies["28×28 PNG"], [50, 90]) * 1000
        lines.append(
            f"| a 28×28 PNG every 100 ms while 4 clients loop on {cheap.name} ({cpu[cheap.name] * 1000:.0f} ms of "
            f"CPU each, read in process) for 15 s: p50 ≤ 100 ms, p90 ≤ 500 ms | p50 {p50:.0f} ms, p90 {p90:.0f} ms "
            f"({len(latencies['28×28 PNG'])} requests) |"
        )
        before = tree_rss_mb(proc.pid)
        start = time.perf_counter()
        status = _huge_feedback(url, 20_000_000)
        seconds = time.perf_counter() - start
        grown = tree_rss_mb(proc.pid) - before
        lines.append(
            f"| a 20 MB /feedback body: 413 within 2 s, RSS up by under 100 MB "
            f"| {status} in {seconds:.2f} s, RSS up {grown:.0f} MB |"
        )
        ids = [json.loads(_post(url + "/predict", seven)[1])["prediction_id"] for _ in range(800)]
        stored = _flood(url, ids)
        lines.append(f"| one client flooding corrections for 20 s over 8 connections: at most 100 stored | {stored} |")
    return "\n".join(lines)


def _huge_feedback(url: str, size: int) -> int:
    """The status a /feedback body of `size` bytes gets, sent as a client would until the server stops it."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.encode())
        with contextlib.suppress(OSError):  # the server answers and closes before the body is all sent
            for _ in range(size // 65536):
                s.sendall(b"a" * 65536)
        with contextlib.suppress(OSError):
            return int(s.recv(65536).split(b" ", 2)[1])
    return 0


def _under_attack(
    url: str, worst: bytes, normal: dict[str, tuple[bytes, float]], seconds: float
) -> dict[str, list[float]]:
    """Latencies of each normal upload, sent every so many seconds from a client of its own, while 4 other clients
    send `worst` back to back."""
    stop = threading.Event()

    def attack(client: str) -> None:
        while not stop.is_set():
            _post(url + "/predict", worst, "application/octet-stream", client=client)

    latencies: dict[str, list[float]] = {name: [] for name in normal}

    def send(name: str, data: bytes, every: float, client: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            status, _ = _post(url + "/predict", data, "application/octet-stream", client=client)
            latencies[name].append(time.perf_counter() - start)
            assert status == 200, status
            time.sleep(max(0.0, every - latencies[name][-1]))

    attackers = [threading.Thread(target=attack, args=(f"203.0.113.{i}",)) for i in range(4)]
    senders = [
        threading.Thread(target=send, args=(name, data, every, f"192.0.2.{i}"))
        for i, (name, (data, every)) in enumerate(normal.items())
    ]
    for t in attackers:
        t.start()
    time.sleep(1)  # the attack under way
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    stop.set()
    for t in attackers:
        t.join()
    return latencies


def _flood(url: str, ids: list[str], seconds: float = 20) -> int:
    """Corrections of every id as a 1, from 8 connections for `seconds`: how many were stored (201)."""
    stored, lock = 0, threading.Lock()
    deadline = time.monotonic() + seconds
    queue = iter(ids)

    def send() -> None:
        nonlocal stored
        while time.monotonic() < deadline:
            with lock:
                prediction_id = next(queue, None)
            if prediction_id is None:
                return
            body = json.dumps({"prediction_id": prediction_id, "label": 1}).encode()
            status, _ = _post(url + "/feedback", body, "application/json")
            with lock:
                stored += status == 201

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["cost", "service"], help="one section (default: both)")
    parser.add_argument("--runs", type=int, default=3, help="runs per input for the CPU medians (default: 3)")
    args = parser.parse_args()
    stamp = f"Measured {time.strftime('%Y-%m-%d')} on {machine()}, with `python bench/hostile.py --only {{}}`."
    # Each section replaces its namesake in HOSTILE.md, so that --only keeps the other.
    titles = {"cost": "## Cost of each input, in process", "service": "## The service under attack"}
    old = OUT.read_text() if OUT.exists() else ""
    sections = {title: "## " + part.strip() for part in old.split("\n## ")[1:] for title in titles.values()
                if ("## " + part).startswith(title)}  # fmt: skip
    if args.only in (None, "cost"):
        intro = (
            f"{stamp.format('cost')} CPU is the median of {args.runs} runs. Peak memory is what the process grew "
            "by, so it reads low after a larger input: the allocator keeps and reuses what that one freed."
        )
        sections[titles["cost"]] = f"{titles['cost']}\n{intro}\n\n" + measure_cost(args.runs)
    if args.only in (None, "service"):
        intro = f"{stamp.format('service')} `serve.py --workers 2`."
        sections[titles["service"]] = f"{titles['service']}\n{intro}\n\n" + measure_service()
    ordered = [sections[t] for t in titles.values() if t in sections]
    OUT.write_text("# Hostile inputs\n\n" + "\n\n".join(ordered) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
