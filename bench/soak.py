"""Load, soak and graceful-shutdown check of one uvicorn worker, on loopback only; writes bench/SOAK.md.

    python bench/soak.py                     # 64 connections for 60 s, then a shutdown under load
    python bench/soak.py --seconds 30 --connections 64

wrk posts a 28x28 PNG to /predict as fast as the server answers, while this
script samples the server's RSS. Every request must succeed, and the RSS of
the last fifth of the run may be at most 10% above that of the first fifth.
Then 16 clients each post a 256-image batch, and the server gets SIGTERM while
they are in flight: every one of them must still get its 200.
"""

import argparse
import datetime
import signal
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import digit_png, machine, rss_mb, serve, wrk

RESULTS = Path(__file__).resolve().parent / "SOAK.md"


def sample_rss(pid: int, stop: threading.Event, samples: list[float]) -> None:
    while not stop.is_set():
        samples.append(rss_mb(pid))
        time.sleep(0.25)


def soak(url: str, pid: int, image: Path, seconds: int, connections: int) -> dict[str, Any]:
    rss_before = rss_mb(pid)
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(pid, stop, samples))
    sampler.start()
    try:
        result = wrk(url + "/predict", image, seconds, connections, threads=1)
    finally:
        stop.set()
        sampler.join()
    fifth = max(1, len(samples) // 5)
    first, last = statistics.mean(samples[:fifth]), statistics.mean(samples[-fifth:])
    errors = sum(result[k] for k in ("connect_errors", "read_errors", "write_errors", "non_2xx", "timeouts"))
    with urllib.request.urlopen(url + "/metrics") as r:
        five_xx = [
            row
            for row in r.read().decode().splitlines()
            if row.startswith("http_requests_total{") and 'status="5' in row
        ]
    return {
        **result,
        "errors": errors,
        "rss_before_mb": rss_before,
        "rss_first_fifth_mb": first,
        "rss_last_fifth_mb": last,
        "rss_growth": last / first - 1,
        "five_xx_lines": five_xx,
    }


def shutdown_under_load(image: Path, clients: int = 16) -> dict[str, Any]:
    png = image.read_bytes()
    boundary = "soak-boundary"
    part = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="d.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + b"\r\n"
    )
    body = part * 256 + f"--{boundary}--\r\n".encode()
    statuses: list[int | str] = []
    with serve() as (url, proc):

        def post() -> None:
            req = urllib.request.Request(
                url + "/predict/batch", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    statuses.append(r.status if len(r.read()) > 1000 else "short answer")
            except OSError as e:
                statuses.append(repr(e))

        threads = [threading.Thread(target=post) for _ in range(clients)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # all sent, most still being answered
        start = time.perf_counter()
        proc.terminate()
        code = proc.wait(timeout=60)
        drained = time.perf_counter() - start
        for t in threads:
            t.join()
    return {
        "clients": clients,
        "ok": statuses.count(200),
        "statuses": statuses,
        "exit_code": code,
        "drain_seconds": drained,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="length of the soak (default: 60)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent wrk connections (default: 64)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        image = digit_png(Path(tmp) / "seven.png")
        with serve() as (url, proc):
            s = soak(url, proc.pid, image, args.seconds, args.connections)
        g = shutdown_under_load(image)

    # uvicorn re-raises the SIGTERM once it has drained, so the parent sees how it ended: -15 is a clean exit.
    passed = (
        s["errors"] == 0
        and not s["five_xx_lines"]
        and s["requests"] >= 20_000
        and s["rss_growth"] <= 0.10
        and g["ok"] == g["clients"]
        and g["exit_code"] in (0, -signal.SIGTERM)
    )
    report = f"""# Soak and shutdown results

Measured {datetime.date.today()} on {machine()}, one uvicorn worker, loopback only.
Reproduce with `python bench/soak.py --seconds {args.seconds} --connections {args.connections}` (or `make soak`).

## Load and soak
| figure | value |
| --- | --- |
| load | wrk, {args.connections} connections, {args.seconds} s, multipart POST /predict of a 28×28 PNG |
| requests | {s["requests"]:,} ({s["rps"]:.0f}/s) |
| errors (connect, read, write, timeout, non-2xx) | {s["errors"]} |
| 5xx counted by /metrics | {len(s["five_xx_lines"])} |
| latency p50 / p90 / p99 / max | {" / ".join(f"{s[k]:.1f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))} ms |
| RSS before the load | {s["rss_before_mb"]:.0f} MB |
| RSS, mean of the first fifth → last fifth | {s["rss_first_fifth_mb"]:.1f} → {s["rss_last_fifth_mb"]:.1f} MB \
({s["rss_growth"]:+.1%}; limit +10%) |

## Graceful shutdown
{g["clients"]} clients each posted a 256-image batch to /predict/batch; SIGTERM reached the server while they
were in flight. {g["ok"]} of {g["clients"]} got their 200 with all predictions; the server drained in
{g["drain_seconds"]:.2f} s and exited with status {g["exit_code"]} (uvicorn re-raises the SIGTERM after a clean
shutdown).

**{"PASS" if passed else "FAIL"}**
"""
    RESULTS.write_text(report)
    print(report)
    if not passed:
        print({"soak": s, "shutdown": g})
        raise SystemExit(1)


if __name__ == "__main__":
    main()
