"""New weights without a restart: SIGHUP to serve.py replaces its workers one at a time, under load, and no
request fails."""

import http.client
import json
import os
import shutil
import signal
import threading
import time

from digits.inference.predictor import Predictor
from digits.inference.weights import DEFAULT_WEIGHTS, save_weights, sha256_path
from tests.helpers import start_server, stop, wait_healthy

CLIENTS = 4


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    """On a fresh connection, as curl sends it, so that any worker, old or new, may take it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body, {"Content-Type": "image/png"} if body else {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_sighup_serves_new_weights_and_loses_no_request(tmp_path, seven_png):
    weights = tmp_path / "mnist_mlp.safetensors"
    shutil.copyfile(DEFAULT_WEIGHTS, weights)
    shutil.copyfile(sha256_path(DEFAULT_WEIGHTS), sha256_path(weights))
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "WEIGHTS_PATH": str(weights),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fb.db'}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    proc, port = start_server(env, "--workers", "2", log=log)
    answers: list[tuple[float, int, str]] = []  # when each request was sent, its status, the model it names
    failures: list[str] = []
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            sent = time.monotonic()
            try:
                status, body = request(port, "POST", "/predict", seven_png)
                answers.append((sent, status, body.get("model", "")))
            except (OSError, ValueError) as e:  # refused, reset, or not JSON: each a lost request
                failures.append(repr(e))

    try:
        wait_healthy(port, proc, log)
        old = request(port, "GET", "/model")[1]["sha256"]
        shipped = Predictor(weights)
        staged = tmp_path / "new.safetensors"
        save_weights(shipped.state, staged, shipped.metadata | {"retrained": "for this test"})
        new = Predictor(staged)
        assert new.sha256 != old
        clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for c in clients:
            c.start()
        time.sleep(3)
        staged.replace(weights)
        sha256_path(staged).replace(sha256_path(weights))
        hup = len(log.read_text())
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 120
        while log.read_text()[hup:].count("Finished server process") < 2:  # both old workers have drained
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        swapped = time.monotonic()
        time.sleep(3)
        done.set()
        for c in clients:
            c.join()
        assert failures == []
        assert {status for _, status, _ in answers} == {200}
        after = {model for sent, _, model in answers if sent > swapped}
        assert after == {new.model_id}
        assert {model for sent, _, model in answers if sent < swapped} >= {shipped.model_id}
        assert request(port, "GET", "/model")[1]["sha256"] == new.sha256
        assert "aborting the restart" not in log.read_text()
    finally:
        done.set()
        stop(proc)
