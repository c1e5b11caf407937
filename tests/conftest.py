"""Fixtures, and the markers: each test is marked with its folder's name (unit, api, system, browser, quality), so
that `pytest -m "unit or api"` runs what starts no process and measures no accuracy (make check)."""

import io
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digits.imaging.png import encode
from digits.inference.predictor import Predictor
from digits.training import dataset, report
from main import app
from tests.helpers import (
    SERVER_TIMEOUT_S,
    compose,
    free_port,
    postgres_bin,
    render,
    start_server,
    stop,
    wait_healthy,
)

KINDS = ("unit", "api", "system", "browser", "quality")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (make test runs a file on each core), each worker, and every process it starts, keeps its
    temporary files in a folder of its own: what the file beside it leaves in /tmp, such as the pymp-* folder of a
    process it killed, is no write of this one's (test_hardening's disk_writes). The folders are made in one that
    the controller removes once every worker has exited, and so has run its own clean-up; the controller itself
    keeps /tmp, where pytest keeps the last runs' tmp_path."""
    if hasattr(config, "workerinput"):
        own = tempfile.mkdtemp(prefix=f"{config.workerinput['workerid']}-")
        os.chmod(own, 0o1777)  # as /tmp: PostgreSQL's data folder, made in it, is the postgres user's
        os.environ["TMPDIR"] = tempfile.tempdir = own
    elif config.getoption("numprocesses", None):
        tempfile.tempdir = tempfile.gettempdir()  # the controller's own stays where it was
        workers = tempfile.mkdtemp(prefix="digits-tests-")
        os.chmod(workers, 0o1777)
        os.environ["TMPDIR"] = workers
        config.add_cleanup(lambda: shutil.rmtree(workers, ignore_errors=True))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = item.path.parent.name
        assert kind in KINDS, f"{item.nodeid}: a test lives in one of the folders {', '.join(KINDS)}"
        item.add_marker(kind)


@pytest.fixture(scope="session", autouse=True)
def suite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's corrections go to a database of its own, never to data/feedback.db."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATABASE_URL", f"sqlite:///{tmp_path_factory.mktemp('suite') / 'feedback.db'}")
        yield


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


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The real app under uvicorn on a free loopback port, with a short upload timeout for the slow-client tests."""
    log = tmp_path_factory.mktemp("server") / "uvicorn.log"
    proc, port = start_server({**os.environ, "REQUEST_TIMEOUT_S": str(SERVER_TIMEOUT_S)}, log=log, uvicorn=True)
    try:  # a setup interrupted (a timeout, ^C) stops the server too
        wait_healthy(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The official 10,000 test images (uint8, N×28×28) and labels."""
    images, labels = dataset.load(train=False)
    return images.numpy(), labels.numpy()


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


@pytest.fixture(scope="session")
def predictor() -> Predictor:
    """The shipped weights, loaded once."""
    return Predictor()


@pytest.fixture(scope="module")
def seven(mnist_test) -> np.ndarray:
    return mnist_test[0][0]  # the first test digit, a 7


@pytest.fixture
def three_digits(mnist_test) -> tuple[bytes, str, tuple[int, int]]:
    images, labels = mnist_test
    page = compose([images[i] for i in (0, 1, 2)], [8, 8], np.random.default_rng(0))
    data = render(page, "paper", np.random.default_rng(0))
    return data, "".join(map(str, labels[:3])), Image.open(io.BytesIO(data)).size
