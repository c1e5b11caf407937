"""The container image, built by `make image` and run by podman as users run it: read-only, as its own user.

The image is built on the Debian base and local CPU torch wheel that `make image` uses here (the Dockerfile's
build arguments); its defaults, python:3.11-slim and PyTorch's CPU index, can't be reached from this machine.
"""

import http.client
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from conftest import ROOT, encode, free_port

IMAGE = os.environ.get("IMAGE", "localhost/digits:latest")
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "podman" / "containers.conf")}

pytestmark = pytest.mark.slow


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    """The image of this checkout: `make image` builds it, from podman's cache when nothing changed."""
    if not shutil.which("podman"):
        pytest.fail("podman is not installed: `make test` installs it (make container-debs)")
    built = subprocess.run(["make", "-s", "image", f"IMAGE={IMAGE}"], cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return IMAGE


@dataclass
class Container:
    name: str
    port: int

    def request(self, method: str, path: str, body: bytes | None = None, ctype: str = "") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


@pytest.fixture
def run(image) -> Iterator[Callable[..., Container]]:
    """Starts the image as the README says to: read-only, its /tmp in memory, a secret from the environment."""
    names: list[str] = []

    def started(*args: str) -> Container:
        name, port = f"digits-test-{secrets.token_hex(4)}", free_port()
        names.append(name)
        podman("run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "-p", f"127.0.0.1:{port}:8000",
               "-e", f"PREDICTION_SECRET={secrets.token_urlsafe(32)}", "-e", "DATABASE_URL=sqlite:////tmp/feedback.db",
               *args, image)  # fmt: skip
        container = Container(name, port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if container.request("GET", "/healthz")[0] == 200:
                    return container
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"the container never answered /healthz: {podman('logs', name, check=False).stdout[-3000:]}")

    yield started
    for name in names:
        podman("rm", "-f", "-t", "0", name, check=False)


def test_it_runs_as_its_own_user_on_a_read_only_root(run):
    c = run()
    assert podman("exec", c.name, "id", "-u").stdout.strip() == "10001"
    assert podman("inspect", c.name, "--format", "{{.HostConfig.ReadonlyRootfs}}").stdout.strip() == "true"
    denied = podman("exec", c.name, "touch", "/app/weights/x", check=False)
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr


def test_its_health_check_passes(run):
    c = run()
    assert podman("healthcheck", "run", c.name, check=False).returncode == 0  # the image's HEALTHCHECK, kept
    assert json.loads(c.request("GET", "/healthz")[1]) == {"status": "ok"}


def test_it_reads_a_digit_and_a_number(run, seven_png, mnist_test):
    c = run()
    status, body = c.request("POST", "/predict", seven_png, "image/png")
    assert status == 200
    assert json.loads(body)["digit"] == 7
    images, labels = mnist_test
    strip = 255 - np.kron(np.concatenate([images[0], images[1], images[2]], axis=1), np.ones((4, 4), np.uint8))
    status, body = c.request("POST", "/predict/number", encode(strip), "image/png")
    assert status == 200
    assert json.loads(body)["number"] == "".join(map(str, labels[:3]))


def test_sigterm_lets_the_requests_in_flight_finish(run, mnist_test):
    """podman stop, as compose and Kubernetes stop a container: what was being answered is answered."""
    c = run()
    images, _ = mnist_test
    boundary = "b0undary"
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + encode(image)
        + b"\r\n"
        for i, image in enumerate(images[:256])
    )
    batch = parts + f"--{boundary}--\r\n".encode()
    answered: list[tuple[float, float, int]] = []  # sent, answered, status
    stop_sent: list[float] = []

    def client() -> None:
        while not stop_sent:
            sent = time.monotonic()
            try:
                status, _ = c.request("POST", "/predict/batch", batch, f"multipart/form-data; boundary={boundary}")
            except OSError:
                status = 0  # refused or cut: the container has stopped listening
            answered.append((sent, time.monotonic(), status))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop_sent.append(time.monotonic())
    stopped = podman("stop", "-t", "30", c.name)
    for t in threads:
        t.join(timeout=30)
    in_flight = [a for a in answered if a[0] < stop_sent[0] - 0.1 and a[1] > stop_sent[0]]
    assert in_flight, "no request was in flight when the container was told to stop"
    assert all(status == 200 for _, _, status in in_flight), in_flight
    assert stopped.returncode == 0
    # Stopped by the signal, not killed at the end of the 30 s: the workers finished and uvicorn exited.
    assert podman("inspect", c.name, "--format", "{{.State.ExitCode}}").stdout.strip() == "0"
