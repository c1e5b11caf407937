"""What many tests use that is no fixture: where the checkout is, drawing inputs, reading answers, starting a
server."""

import contextlib
import http.client
import importlib.util
import math
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from digits.imaging.fit import ink_box
from digits.imaging.png import encode
from digits.training import redraw

ROOT = Path(__file__).resolve().parent.parent


SERVER_TIMEOUT_S = 3


def chance(rate: float, n: int) -> float:
    """How far a rate measured on n items may move by chance alone: three standard errors. A test's bound sits
    this far from the figure the docs state, so that only a real change crosses it."""
    return 3 * math.sqrt(rate * (1 - rate) / n)


def bench_module(name: str) -> ModuleType:
    """A script of bench/ as a module, with bench/ on the path for the neighbours it imports (common.py)."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered, as an import would: its functions are then found by name, as multiprocessing pickles them.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def start_server(
    env: dict[str, str], *args: str, log: Path | None = None, uvicorn: bool = False
) -> tuple[subprocess.Popen, int]:
    """The service on a free loopback port, as users start it: `serve.py` with args, or `uvicorn main:app`. Its
    output goes to log, a file, not a pipe: a full pipe would stall the server's logging. Returns at once."""
    port = free_port()
    command = ["-m", "uvicorn", "main:app", "--host", "127.0.0.1"] if uvicorn else ["serve.py"]
    with open(log or os.devnull, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *command, "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, port


def wait_healthy(port: int, proc: subprocess.Popen, log: Path | None = None, timeout_s: float = 60) -> None:
    """Returns once /healthz answers on a fresh connection; fails the test if the process ends or never answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=1)) as conn:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    said = log.read_text()[-2000:] if log and log.exists() else ""
    pytest.fail(f"the process on port {port} did not come up: {said}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, as a user stops the service; a server stuck in its event loop never sees it, and is killed rather
    than left running, and the test fails."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def form_prediction_id(html: str) -> str:
    """The prediction_id in a result page's correction form."""
    found = re.search(r'name="prediction_id" value="([^"]+)"', html)
    assert found, "the page has no correction form"
    return found.group(1)


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def rows(url: str) -> list[dict]:
    with create_engine(url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM corrections ORDER BY id"))]


def compose(digits: list[np.ndarray], gaps: list[int], rng: np.random.Generator) -> np.ndarray:
    """Digits side by side at random sizes and baselines, ink bright on black; a negative gap overlaps them."""
    parts = []
    for d in digits:
        crop, scale = ink_box(d), rng.uniform(0.8, 1.2)
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        parts.append(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR)))
    height = max(p.shape[0] for p in parts) + 12
    page = np.zeros((height + 16, sum(p.shape[1] for p in parts) + 16 + max(0, sum(gaps))), np.uint8)
    x = 8
    for part, gap in zip(parts, [*gaps, 0], strict=True):
        y = 8 + int(rng.integers(0, height - part.shape[0] + 1))
        window = page[y : y + part.shape[0], x : x + part.shape[1]]
        np.maximum(window, part, out=window)
        x += part.shape[1] + gap
    return page[:, : x + 8]


def render(page: np.ndarray, style: str, rng: np.random.Generator) -> bytes:
    """A composed number as people send one: ink on paper, a photo of it, a photo with a sharp shadow's edge
    across it, or a drawing on a transparent canvas."""
    h, w = page.shape
    ink = np.asarray(Image.fromarray(page).resize((w * 4, h * 4), Image.Resampling.BICUBIC), np.float64) / 255
    if style == "shadow":
        return _in_a_shadows_edge(np.pad(ink, ink.shape[0] // 3), rng)
    if style == "canvas":
        rgba = np.zeros((*ink.shape, 4), np.uint8)
        rgba[..., 3] = np.rint(ink * 255)
        return encode(Image.fromarray(rgba))
    if style == "photo":
        light = 170 + 40 * np.linspace(0, 1, ink.shape[1])[None, :]
        return _photo(light + rng.normal(0, 4, ink.shape) - 140 * ink)
    return encode(Image.fromarray(np.rint(255 - 255 * ink).astype(np.uint8)))


def _in_a_shadows_edge(ink: np.ndarray, rng: np.random.Generator) -> bytes:
    """A photo of ink on paper with a phone's or a hand's sharp shadow, 40-75% deep, its edge 0.5-2.5 px wide
    through a random point of the ink at a random angle: some of the digits in the shadow, some in the light."""
    ys, xs = np.nonzero(ink > 0.5)
    k, angle = rng.integers(len(ys)), rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0 : ink.shape[0], 0 : ink.shape[1]]
    side = ((yy - ys[k]) * np.sin(angle) + (xx - xs[k]) * np.cos(angle)) / rng.uniform(0.5, 2.5)
    lighting = 1 - rng.uniform(0.4, 0.75) / (1 + np.exp(-np.clip(side, -60, 60)))
    paper = rng.uniform(0.8, 0.95)
    gray = (paper + (rng.uniform(0.05, 0.25) - paper) * ink) * lighting + rng.normal(0, 0.015, ink.shape)
    return _photo(np.rint(gray * 255))


def _photo(levels: np.ndarray) -> bytes:
    """Grey levels as a phone's colour JPEG."""
    return encode(Image.fromarray(np.clip(levels, 0, 255).astype(np.uint8)).convert("RGB"), "JPEG", quality=85)


def realism_uploads(mnist_test, per_condition: int = 4) -> list[bytes]:
    """A few test digits drawn in each of the realism benchmark's conditions (redraw.conditions), seeded."""
    rng = np.random.default_rng(3)
    digits = mnist_test[0][:per_condition]
    return [render(redraw.skeleton(d), rng) for _, render in redraw.conditions().values() for d in digits]
