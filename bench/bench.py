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
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's own modules, one folder up

from common import (
    digit_png,
    ensure_wrk,
    fmt,
    free_port,
    post,
    serve,
    stamp,
    wait_healthy,
    wrk,
)
from digits.inference.forward import limit_threads
from digits.inference.predictor import Predictor
from digits.training import dataset
from digits.training.report import phone_photo
from in_process import forward_section, in_process_section, stages_section, training_section
from predict import CHUNK, read_files
from serving import peers, profile

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
# What a worker imports to serve, the floor under its cold start (torch no longer among them: it serves in numpy).
LIBRARIES = "import fastapi, numpy, PIL.Image, scipy.ndimage, uvicorn"


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
        limit_threads(1)
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
chunks of 256 as each worker does. The command is timed whole (starting Python and its imports included),
and from its first line of output to its last. Goal: at least 0.8 × {cores} × the one-core
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
    """Launch of `uvicorn main:app` to the first 200 from /healthz, against importing the libraries it serves with."""
    server, imports = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", LIBRARIES], check=True)
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
200 from /healthz, against `python -c "{LIBRARIES}"`.

| server ready | the imports | ratio |
| --- | --- | --- |
{chr(10).join(cold_start(repeats))}
"""


def threads_section(image: Path, rounds: int, seconds: int) -> str:
    return f"""## Threads in the server
{stamp("threads", rounds, seconds)} `TORCH_THREADS` (threads of the forward pass, numpy's BLAS and torch's,
default 1) and `THREADPOOL_SIZE` (threads running the sync endpoints, such as /predict/batch, default 1; 40 is
AnyIO's own default; /predict's micro-batches have a thread of their own): single requests at 32 connections
(multipart), and 256-image batches.

| forward threads | threadpool | /predict requests/s | p99 | /predict/batch |
| --- | --- | --- | --- | --- |
{chr(10).join(threads(image, rounds, seconds))}
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
        "stages",
        "forward",
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
            "stages": lambda: stages_section(repeats),
            "forward": lambda: forward_section(repeats),
            "training": lambda: training_section(3),
        }
        for name in args.only:
            section = measure[name]()
            report = replace_section(report, section)
            RESULTS.write_text(report)  # section by section, so that a long run keeps what it measured
            print(section, flush=True)


if __name__ == "__main__":
    main()
