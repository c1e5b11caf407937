import importlib.util
import io
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from types import ModuleType

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVER_TIMEOUT_S = 3
# The suite's corrections go to a database of its own, never to data/feedback.db.
os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='digits-tests-')}/feedback.db"

import dataset  # noqa: E402
import report  # noqa: E402
from main import app  # noqa: E402


def chance(rate: float, n: int) -> float:
    """How far a rate measured on n items may move by chance alone: three standard errors. A test's bound sits
    this far from the figure the README states, so that only a real change crosses it."""
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


@pytest.fixture
def client():
    with TestClient(app) as c:
        yield c


@pytest.fixture
def db_url(tmp_path, monkeypatch) -> str:
    """A database of the test's own, for the service the test starts."""
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture
def fresh_client(db_url):
    """The service on a database of the test's own."""
    with TestClient(app) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The real app under uvicorn on a free loopback port, with a short upload timeout for the slow-client tests."""
    port = free_port()
    env = {**os.environ, "REQUEST_TIMEOUT_S": str(SERVER_TIMEOUT_S)}
    log = tmp_path_factory.mktemp("server") / "uvicorn.log"
    with open(log, "wb") as out:  # a file, not a pipe: a full pipe would stall the server's logging
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"uvicorn did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # a server stuck in its event loop never sees SIGTERM: don't leave it running
        proc.kill()
        proc.wait()
        raise


@pytest.fixture(scope="session")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The official 10,000 test images (uint8, N×28×28) and labels."""
    images, labels = dataset.load(train=False)
    return images.numpy(), labels.numpy()


def form_prediction_id(html: str) -> str:
    """The prediction_id in a result page's correction form."""
    found = re.search(r'name="prediction_id" value="([^"]+)"', html)
    assert found, "the page has no correction form"
    return found.group(1)


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **params) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


@pytest.fixture(scope="session")
def fashion_mnist() -> np.ndarray:
    """Fashion-MNIST's test images, which report.py measures rejection on; a test that needs them fails without."""
    if not report.FASHION_MNIST.is_file():
        pytest.fail(f"{report.FASHION_MNIST} is missing: `make test` installs Debian's dataset-fashion-mnist")
    return report.clothes()


@pytest.fixture(scope="session")
def clothes_pngs(fashion_mnist) -> list[bytes]:
    """The first 20 Fashion-MNIST test images (shoes, shirts, bags) as PNG uploads: things that are no digit."""
    return [encode(c) for c in fashion_mnist[:20]]


@pytest.fixture(scope="session")
def seven_png(mnist_test) -> bytes:
    """The first test digit, a 7, as a native 28×28 PNG."""
    images, labels = mnist_test
    assert labels[0] == 7
    return encode(images[0])


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_database():
    """A real PostgreSQL on a loopback port for the session; calling the fixture's value makes a fresh database."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed: `make test` installs Debian's postgresql")
    # Not under pytest's tmp_path: as root, PostgreSQL runs as the postgres user, who can't enter root's 0700 dirs.
    data = Path(tempfile.mkdtemp(prefix="digits-pg-"))
    user = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]  # initdb refuses to run as root
    if user:
        shutil.chown(data, "postgres")
    subprocess.run(
        [*user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    subprocess.run(
        [
            *user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(data / "log"),
            "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    server = f"postgres@127.0.0.1:{port}"

    def create() -> str:
        name = f"digits_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"postgresql://{server}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://{server}/{name}"

    try:
        yield create
    finally:
        subprocess.run([*user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
