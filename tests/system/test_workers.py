"""Several workers on one machine, as `make run` starts them: every worker answers, and /metrics counts them all."""

import http.client
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from serve import WORKER_READY_S
from tests.helpers import start_server

CORES = len(os.sched_getaffinity(0))


def get(port: int, path: str) -> tuple[int, str]:
    """One request on a fresh connection, so that any worker may take it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def metric(exposition: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", exposition, re.MULTILINE)
    assert found, f"{sample} is not in /metrics"
    return float(found.group(1))


def wait_for_workers(port: int, n: int, timeout: float = 90) -> str:
    """The metrics once n workers have loaded the model."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, body = get(port, "/metrics")
            if status == 200 and metric(body, "digits_workers") == n:
                return body
        except (OSError, AssertionError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{n} workers did not come up")


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, int]:
    env = {k: v for k, v in os.environ.items() if k != "WORKERS"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    return start_server(env, *args, log=tmp_path / "server.log")


def said(tmp_path: Path) -> str:
    """The end of the server's log, for a failure's message."""
    return (tmp_path / "server.log").read_text()[-3000:]


def pid_of(gauge_file: Path) -> int:
    return int(gauge_file.stem.rsplit("_", 1)[1])


def serving(gauge_file: Path) -> bool:
    """Whether the worker that writes this file has loaded the model, read from the file itself."""
    [workers] = [m for m in MultiProcessCollector.merge([str(gauge_file)]) if m.name == "digits_workers"]
    return sum(s.value for s in workers.samples) == 1


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> Iterator[tuple[int, Path]]:
    tmp = tmp_path_factory.mktemp("workers")
    (tmp / "metrics").mkdir()
    (tmp / "metrics" / "counter_999999.db").write_bytes(b"left by an earlier run")  # serve.py must wipe it
    proc, port = start(tmp, "--workers", "2")
    try:
        wait_for_workers(port, 2)
        yield port, tmp
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_make_run_starts_one_worker_per_core(tmp_path):
    proc, port = start(tmp_path)
    try:
        wait_for_workers(port, CORES)
        assert {get(port, "/healthz")[0] for _ in range(4 * CORES)} == {200}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_every_scrape_gives_the_same_totals(two_workers, seven_png):
    port, _ = two_workers
    for _ in range(30):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/predict", body=seven_png, headers={"Content-Type": "image/png"})
        assert conn.getresponse().status == 200
        conn.close()
    scrapes = [get(port, "/metrics")[1] for _ in range(10)]
    predicted = {metric(s, 'http_requests_total{endpoint="/predict",method="POST",status="200"}') for s in scrapes}
    assert predicted == {30.0}
    assert {metric(s, 'predictions_total{digit="7",endpoint="/predict"}') for s in scrapes} == {30.0}
    assert {metric(s, "http_requests_in_progress") for s in scrapes} == {1.0}  # the scrape itself


def test_a_killed_worker_is_replaced_and_its_gauges_dropped(two_workers, seven_png):
    port, tmp = two_workers
    metrics = tmp / "metrics"
    before = get(port, "/metrics")[1]
    served = metric(before, 'predictions_total{digit="7",endpoint="/predict"}')
    pids = sorted(pid_of(f) for f in metrics.glob("gauge_livesum_*.db"))
    assert len(pids) == 2
    # Stopped first, so that the supervisor is waiting for its answer to a health check (every 0.5 s) when it dies:
    # uvicorn's supervisor then waited out the whole WORKER_READY_S (serve.WorkerProcess).
    os.kill(pids[0], signal.SIGSTOP)
    time.sleep(1)
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + WORKER_READY_S / 2
    while not any(serving(f) for f in metrics.glob("gauge_livesum_*.db") if pid_of(f) not in pids):
        assert time.monotonic() < deadline, f"uvicorn did not start a worker in place of the killed one: {said(tmp)}"
        time.sleep(0.2)
    after = wait_for_workers(port, 2)  # not 3: the dead worker's share is gone
    assert metric(after, "http_requests_in_progress") == 1.0
    assert (
        metric(after, 'predictions_total{digit="7",endpoint="/predict"}') == served
    )  # what it counted is still counted
    assert not (metrics / "counter_999999.db").exists()
