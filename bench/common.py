"""What the benchmark and soak scripts share: a server on a loopback port, wrk, memory readings, and the
answer that the peer servers give."""

import base64
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
WRK_LUA = Path(__file__).resolve().parent / "wrk.lua"
sys.path.insert(0, str(ROOT))

from digits.feedback.ids import PredictionIds
from digits.imaging.errors import ImageError
from digits.imaging.png import to_png
from digits.inference.predictor import Prediction, Predictor
from digits.inference.weights import model_id


def ensure_wrk() -> str:
    """wrk from Debian, installed when missing (the scripts run as root here)."""
    if not shutil.which("wrk"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return wrk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> float:
    """Seconds until GET /healthz answers 200."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("server did not become healthy")


@contextlib.contextmanager
def serve(
    app: str = "main:app", env: dict[str, Any] | None = None, log: Path | None = None, workers: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """One uvicorn worker on a free loopback port, or with workers, serve.py as `make run` starts it; yields its
    URL and process, and stops it after."""
    port = free_port()
    if workers is None:
        command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    else:
        command = [sys.executable, "serve.py", "--port", str(port), "--workers", str(workers)]
    url = f"http://127.0.0.1:{port}"
    with open(log or os.devnull, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            wait_healthy(url, proc)
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


@contextlib.contextmanager
def launch(
    command: list[str], health: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 120
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Any server command, in a session of its own; {port} in the command is filled with a free port. Yields
    its URL once GET health answers 200, and stops the whole process group after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [part.format(port=port) for part in command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(url + health, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not become healthy")
            time.sleep(0.1)
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        time.sleep(1)  # let the port and the cores settle before the next server


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants alive now."""
    found, pids = [], [pid]
    while pids:
        p = pids.pop()
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
        found.append(p)
    return found


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and all its descendants alive now."""
    total = 0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(stat[11]) + int(stat[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str,
    image: Path,
    seconds: int,
    connections: int,
    mode: str = "multipart",
    field: str = "file",
    count: int = 1,
    threads: int = 1,
) -> dict[str, Any]:
    """Run wrk with bench/wrk.lua and return its JSON summary."""
    env = {**os.environ, "IMAGE": str(image), "MODE": mode, "FIELD": field, "COUNT": str(count)}
    cmd = [
        ensure_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_LUA),
        url,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    line = next(row for row in out.splitlines() if row.startswith("WRK_JSON "))
    return json.loads(line.removeprefix("WRK_JSON "))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def tree_rss_mb(pid: int) -> float:
    """The resident memory of a process and its descendants together, such as serve.py and its workers."""
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, RuntimeError):
            total += rss_mb(p)
    return total


def digit_png(path: Path, size: int = 28) -> Path:
    """The first MNIST test digit (a 7) as a PNG, size×size, dark on light when enlarged like a scan."""
    from digits.training import dataset

    images, _ = dataset.load(train=False)
    seven = images[0].numpy()
    im = (
        Image.fromarray(seven)
        if size == 28
        else Image.fromarray(255 - seven).resize((size, size), Image.Resampling.BICUBIC)
    )
    im.save(path)
    return path


def machine() -> str:
    cpu = next(
        (
            row.split(":", 1)[1].strip()
            for row in Path("/proc/cpuinfo").read_text().splitlines()
            if row.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def median_spread(values: list[float]) -> tuple[float, float, float]:
    a = np.asarray(values, dtype=float)
    return float(np.median(a)), float(a.min()), float(a.max())


def peer_answers(predictor: Predictor, ids: PredictionIds, uploads: list[bytes]) -> list[dict[str, Any] | ImageError]:
    """What this service's /predict answers for each upload, field for field, computed as a peer server would."""
    results: list[Prediction | ImageError]
    if len(uploads) == 1:  # as /predict does, without a batch's stacking
        try:
            results = [predictor.predict(uploads[0])]
        except ImageError as e:
            results = [e]
    else:
        results = predictor.predict_many(uploads)
    return [r if isinstance(r, ImageError) else _answer(r, ids, predictor.sha256) for r in results]


def _answer(p: Prediction, ids: PredictionIds, sha256: str) -> dict[str, Any]:
    png = to_png(p.image)
    return {
        "digit": p.digit,
        "confidence": p.confidence,
        "probabilities": p.probabilities,
        "uncertain": p.uncertain,
        "not_a_digit": p.not_a_digit,
        "prediction_id": ids.issue(png, p.digit, p.confidence, sha256),
        "input_image": base64.b64encode(png).decode("ascii"),
        "hint": p.hint,
        "model": model_id(sha256),
    }


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
