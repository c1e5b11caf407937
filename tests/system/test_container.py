"""The container image, built by `make image` and run by podman as users run it: read-only, as its own user.

The image is built on the Debian base that `make image` makes here (the Dockerfile's build argument); its
default, python:3.11-slim, can't be reached from this machine.
"""

import base64
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from digits.imaging.png import encode
from tests.helpers import ROOT, bench_module, free_port

IMAGE = os.environ.get("IMAGE", "localhost/digits:latest")
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "podman" / "containers.conf")}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    """The image of this checkout, and the stand-ins for nginx and PostgreSQL: `make compose-images` builds them
    (installing podman first where it is missing), from podman's cache when nothing changed."""
    built = subprocess.run(["make", "-s", "compose-images", f"IMAGE={IMAGE}"], cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert shutil.which("podman")
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
    """Starts the image as docs/operations.md says to: read-only, its /tmp in memory, a secret from the environment."""
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
    shipped = (ROOT / "weights" / "mnist_mlp.sha256").read_text()[:12]  # the image serves the shipped weights
    assert json.loads(c.request("GET", "/healthz")[1]) == {"status": "ok", "model": shipped}


def test_it_reads_a_digit_and_a_number(run, seven_png, mnist_test):
    """A grey PNG, the page's canvas (colour, which libspng decodes: requirements-serve.txt alone brings it), and a
    whole number."""
    c = run()
    images, labels = mnist_test
    for upload, label in ((seven_png, 7), (bench_module("in_process").canvas_png(images[1]), labels[1])):
        status, body = c.request("POST", "/predict", upload, "image/png")
        assert status == 200
        assert json.loads(body)["digit"] == label
    strip = 255 - np.kron(np.concatenate([images[0], images[1], images[2]], axis=1), np.ones((4, 4), np.uint8))
    status, body = c.request("POST", "/predict/number", encode(strip), "image/png")
    assert status == 200
    assert json.loads(body)["number"] == "".join(map(str, labels[:3]))


def test_sigterm_lets_the_requests_in_flight_finish(run, mnist_test):
    """podman stop, as compose and Kubernetes stop a container: what was being answered is answered."""
    c = run()
    images, _ = mnist_test
    boundary = "b0undary"
    # At 280×280 rather than 28×28: a batch of 28×28 PNGs is answered in 0.1-0.4 s, too soon to be caught 0.2 s in.
    # 280×280 ones take 0.5 s.
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + encode(np.kron(image, np.ones((10, 10), dtype=np.uint8)))
        + b"\r\n"
        for i, image in enumerate(images[:256])
    )
    batch = parts + f"--{boundary}--\r\n".encode()
    answered: list[tuple[float, float, int]] = []  # sent, answered, status
    under_way: dict[int, float] = {}  # client: when its request now under way was sent
    stop_sent: list[float] = []

    def client(k: int) -> None:
        while not stop_sent:
            sent = under_way[k] = time.monotonic()
            try:
                status, _ = c.request("POST", "/predict/batch", batch, f"multipart/form-data; boundary={boundary}")
            except OSError:
                status = 0  # refused or cut: the container has stopped listening
            del under_way[k]
            answered.append((sent, time.monotonic(), status))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    # The stop goes while a request sent at least 0.2 s before it is under way. The four clients' requests come to
    # run in step, so a stop at a fixed time found all four begun within the last 0.1 s, once in CI.
    time.sleep(2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(time.monotonic() - s >= 0.2 for s in list(under_way.values())):
        time.sleep(0.01)
    stop_sent.append(time.monotonic())
    stopped = podman("stop", "-t", "30", c.name)
    for t in threads:
        t.join(timeout=30)
    in_flight = [a for a in answered if a[0] < stop_sent[0] - 0.1 and a[1] > stop_sent[0]]
    assert in_flight, f"no request was in flight when the container was told to stop: {answered}"
    assert all(status == 200 for _, _, status in in_flight), in_flight
    assert stopped.returncode == 0
    # Stopped by the signal, not killed at the end of the 30 s: the workers finished and uvicorn exited.
    assert podman("inspect", c.name, "--format", "{{.State.ExitCode}}").stdout.strip() == "0"


# --- deploy/compose.yaml: nginx, three replicas and PostgreSQL ---

COMPOSE = [str(Path(sys.executable).with_name("podman-compose")), "-f", str(ROOT / "deploy" / "compose.yaml"),
           "-f", str(ROOT / "deploy" / "podman" / "compose.override.yaml")]  # fmt: skip


@dataclass
class Stack:
    project: str
    edge: Container  # nginx, the only port published

    def replica_logs(self) -> list[str]:
        logs = [podman("logs", f"{self.project}_app_{i}", check=False) for i in (1, 2, 3)]
        return [log.stdout + log.stderr for log in logs]  # uvicorn's access log is on stderr

    def corrections(self) -> int:
        count = podman("exec", f"{self.project}_db_1", "psql", "-U", "digits", "-d", "digits", "-tAc",
                       "SELECT count(*) FROM corrections")  # fmt: skip
        return int(count.stdout)


@pytest.fixture(scope="module")
def stack(image) -> Iterator[Stack]:
    """compose up, as the file says, with only deploy/podman/compose.override.yaml's differences."""
    project, port = f"digitstest{secrets.token_hex(3)}", free_port()
    env = {**ENV, "PREDICTION_SECRET": secrets.token_urlsafe(32), "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
           "PORT": str(port), "FEEDBACK_PER_HOUR": "100000"}  # fmt: skip
    compose = [*COMPOSE, "-p", project]
    up = subprocess.run([*compose, "up", "-d"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        edge = Container(f"{project}_nginx_1", port)
        # podman-compose 1.6 with podman 4.3 starts all at once (it ignores depends_on's conditions): the
        # replicas retry the database while it starts, and nginx resolves `app` to the replicas started by then,
        # for good. CI once saw every request fail once app_2 was killed, as if nginx knew that one alone. So nginx
        # is started again once every replica is healthy, as compose.yaml's depends_on starts it.
        deadline = time.monotonic() + 120

        def in_time() -> None:
            assert time.monotonic() < deadline, "\n".join(s[-2000:] for s in Stack(project, edge).replica_logs())

        for i in (1, 2, 3):
            while podman("healthcheck", "run", f"{project}_app_{i}", check=False).returncode != 0:
                in_time()
                time.sleep(1)
        podman("restart", edge.name)
        answered = 0
        while answered < 12:
            in_time()
            try:
                answered = answered + 1 if edge.request("GET", "/healthz")[0] == 200 else 0
            except OSError:
                answered = 0
            time.sleep(0.1 if answered else 1)
        yield Stack(project, edge)
    finally:
        subprocess.run([*compose, "down", "-v", "-t", "10"], env=env, capture_output=True, timeout=300)


def predict_and_correct(edge: Container, png: bytes, label: int) -> tuple[int, int]:
    status, body = edge.request("POST", "/predict", png, "image/png")
    if status != 200:
        return status, 0
    correction = json.dumps({"prediction_id": json.loads(body)["prediction_id"], "label": label}).encode()
    return status, edge.request("POST", "/feedback", correction, "application/json")[0]


def test_compose_spreads_predictions_and_stores_each_correction_once(stack, seven_png):
    before = stack.corrections()
    for i in range(30):
        assert predict_and_correct(stack.edge, seven_png, i % 10) == (200, 201)
    assert stack.corrections() == before + 30
    # nginx takes the replicas in turn, so every one made predictions and stored corrections of others'.
    for log in stack.replica_logs():
        assert '"path": "/predict"' in log
        assert '"path": "/feedback"' in log


def test_compose_loses_nothing_when_a_replica_is_killed_under_load(stack, seven_png):
    before = stack.corrections()
    failures: list[tuple[int, int] | Exception] = []
    stored = [0]
    lock = threading.Lock()
    stop = time.monotonic() + 8

    def load() -> None:
        i = 0
        while time.monotonic() < stop:
            outcome: tuple[int, int] | Exception
            try:
                outcome = predict_and_correct(stack.edge, seven_png, i % 10)
            except (OSError, http.client.HTTPException) as e:  # an answer cut: counted, not lost with the thread
                outcome = e
            with lock:
                if outcome == (200, 201):
                    stored[0] += 1
                else:
                    failures.append(outcome)
            i += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    podman("kill", f"{stack.project}_app_2")  # SIGKILL: what it held is lost to it, and nginx sends it on
    for t in threads:
        t.join()
    assert failures == []
    assert stored[0] > 20
    assert stack.corrections() == before + stored[0]


# --- deploy/kubernetes/ played by podman ---


def played(port: int) -> dict:
    """deployment.yaml with the differences that podman 4.3 needs here, each for a reason:"""
    deployment = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    spec = deployment["spec"]
    spec["replicas"] = 1  # kube play runs one pod, on one host: a second would take the same host port
    for container in spec["template"]["spec"]["containers"]:
        # No registry: the images made here, for the names the manifest leaves to the user's registry.
        container["image"] = {"digits:latest": IMAGE, "nginx:1.27": "localhost/digits-nginx:latest"}[container["image"]]
        # podman 4.3 publishes every containerPort on the host, at its own number unless hostPort names another
        # (containers/podman#17028): the app's goes to a free port, so that a server on the host's 8000 (make run)
        # can't keep the pod from starting.
        container["ports"][0]["hostIP"] = "127.0.0.1"
        container["ports"][0]["hostPort"] = free_port()
        if container["name"] == "nginx":
            container["ports"][0]["hostPort"] = port  # no Service: the host reaches the pod through a host port
            # podman 4.3 mounts a configMap as a directory and ignores subPath: nginx is told where the file is.
            for mount in container["volumeMounts"]:
                if mount["name"] == "nginx-conf":
                    mount["mountPath"] = "/etc/nginx/configmap"
                    del mount["subPath"]
            container["command"] = ["nginx", "-c", "/etc/nginx/configmap/nginx.conf", "-g", "daemon off;"]
    return deployment


@pytest.fixture(scope="module")
def pod(image) -> Iterator[Container]:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="digits-kube-"))
    manifest = workdir / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(played(port), sort_keys=False))
    # The Secret that secretRef names, as podman 4.3 reads one: a JSON object of base64 values. SQLite in the
    # pod's /tmp stands in for the PostgreSQL that DATABASE_URL names in a cluster.
    values = {"PREDICTION_SECRET": secrets.token_urlsafe(32), "DATABASE_URL": "sqlite:////tmp/feedback.db"}
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    (workdir / "secret.json").write_text(json.dumps(encoded))
    podman("secret", "create", "digits", str(workdir / "secret.json"))
    try:
        configmap = ROOT / "deploy" / "kubernetes" / "nginx-configmap.yaml"
        podman("kube", "play", "--configmap", str(configmap), str(manifest))
        edge = Container("digits-pod-0-nginx", port)
        deadline = time.monotonic() + 90
        while True:
            try:
                if edge.request("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, podman("logs", "digits-pod-0-digits", check=False).stderr[-3000:]
            time.sleep(0.5)
        yield edge
    finally:
        podman("kube", "play", "--down", str(manifest), check=False)
        podman("volume", "rm", "-f", "digits", check=False)  # the configMap's
        podman("secret", "rm", "digits", check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_kubernetes_pod_serves_through_its_nginx(pod, seven_png):
    status, body = pod.request("POST", "/predict", seven_png, "image/png")
    assert status == 200
    assert json.loads(body)["digit"] == 7


def test_the_kubernetes_pod_runs_as_the_manifest_says(pod):
    for container in ("digits-pod-0-digits", "digits-pod-0-nginx"):
        assert podman("exec", container, "id", "-u").stdout.strip() == "10001"
        inspected = podman("inspect", container, "--format", "{{.HostConfig.ReadonlyRootfs}} {{.EffectiveCaps}}")
        assert inspected.stdout.strip() == "true []"  # read-only root, every capability dropped
    # WORKERS from the CPU limit of 2: one worker per whole CPU.
    assert podman("exec", "digits-pod-0-digits", "printenv", "WORKERS").stdout.strip() == "2"
