"""Three replicas behind Debian's nginx, sharing one PostgreSQL and one secret: any replica answers any request.

nginx runs deploy/nginx.conf itself, with the replicas' loopback addresses in place of the compose name.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.helpers import ROOT, form_prediction_id, free_port, start_server, wait_healthy

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REPLICAS = 3
SECRET = "a secret that every replica shares"


@dataclass
class Answer:
    status: int
    body: bytes
    replica: str  # the upstream address nginx used, from the header the test's config adds

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Cluster:
    port: int
    replicas: list[subprocess.Popen]
    replica_ports: list[int]
    database: str

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> Answer:
        """One request through nginx on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": content_type} if content_type else {})
            response = conn.getresponse()
            return Answer(response.status, response.read(), response.getheader("X-Upstream", ""))
        finally:
            conn.close()

    def predict(self, png: bytes) -> Answer:
        return self.request("POST", "/predict", png, "image/png")

    def correct(self, prediction_id: str, label: int) -> Answer:
        body = json.dumps({"prediction_id": prediction_id, "label": label}).encode()
        return self.request("POST", "/feedback", body, "application/json")

    def rows(self) -> list[tuple[str, int]]:
        engine = create_engine(self.database)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text("SELECT prediction_id, label FROM corrections"))]
        finally:
            engine.dispose()


def nginx_config(workdir: Path, port: int, replica_ports: list[int]) -> str:
    """deploy/nginx.conf with loopback replicas and a header naming the replica, inside a main context of its own."""
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    servers = "\n    ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in replica_ports)
    site, n = re.subn(r"server app:8000 max_fails=1 fail_timeout=5s;", servers, site)
    assert n == 1, "deploy/nginx.conf no longer names its upstream as this test expects"
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    site = site.replace("location / {", "location / {\n        add_header X-Upstream $upstream_addr always;")
    temp = "".join(
        f"{kind}_temp_path {workdir}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\nworker_processes 1;\npid {workdir}/nginx.pid;\nerror_log {workdir}/error.log;\n"
        f"events {{ worker_connections 1024; }}\n"
        f"http {{\naccess_log off;\n{temp}{site}\n}}\n"
    )


def start_nginx(workdir: Path, replica_ports: list[int]) -> tuple[int, subprocess.Popen]:
    """nginx in workdir, which nginx's workers (nobody) must be able to enter; returns its port and process."""
    port = free_port()
    (workdir / "nginx.conf").write_text(nginx_config(workdir, port, replica_ports))
    with open(workdir / "nginx.log", "wb") as log:
        nginx = subprocess.Popen(
            [NGINX, "-c", str(workdir / "nginx.conf"), "-p", str(workdir)], stdout=log, stderr=subprocess.STDOUT
        )
    return port, nginx


@pytest.fixture(scope="module")
def cluster(postgres_database) -> Iterator[Cluster]:
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed: `make test` installs Debian's nginx")
    database = postgres_database()
    # nginx's workers drop root for nobody, who must reach its temporary directories.
    workdir = Path(tempfile.mkdtemp(prefix="digits-nginx-"))
    workdir.chmod(0o755)
    # Every request comes from this one address, where the users of a real deployment are many.
    env = {**os.environ, "DATABASE_URL": database, "PREDICTION_SECRET": SECRET, "FEEDBACK_PER_HOUR": "100000"}
    # Metrics in the work directory, which is removed, because a replica killed by a test can't remove it.
    started = [
        start_server({**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"metrics{i}")}, "--workers", "1",
                     log=workdir / f"replica{i}.log")
        for i in range(REPLICAS)
    ]  # fmt: skip
    replicas, replica_ports = [proc for proc, _ in started], [port for _, port in started]
    port, nginx = start_nginx(workdir, replica_ports)
    try:
        for i, (p, proc) in enumerate(zip(replica_ports, replicas, strict=True)):
            wait_healthy(p, proc, workdir / f"replica{i}.log", timeout_s=90)
        wait_healthy(port, nginx, workdir / "error.log", timeout_s=90)
        yield Cluster(port, replicas, replica_ports, database)
    finally:
        nginx.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        for proc in (*replicas, nginx):
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def test_every_correction_lands_through_another_replica(cluster, seven_png):
    before = len(cluster.rows())
    made, taken = [], []
    for i in range(200):
        p = cluster.predict(seven_png)
        assert p.status == 200
        c = cluster.correct(p.json()["prediction_id"], i % 10)
        assert c.status == 201, c.body
        made.append(p.replica)
        taken.append(c.replica)
    assert all(
        m != t for m, t in zip(made, taken, strict=True)
    )  # each correction reached a replica that didn't make it
    assert len(set(made)) == REPLICAS
    stored = cluster.rows()
    assert len(stored) == before + 200
    assert len({key for key, _ in stored}) == len(stored)  # no duplicates


def test_the_page_works_behind_the_proxy(cluster, seven_png):
    page = cluster.request("GET", "/upload")
    assert page.status == 200
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.body.decode())
    assert len(assets) == 2  # the stylesheet and the script, by path: right whatever host the browser used
    for asset in assets:
        assert cluster.request("GET", asset).status == 200
    boundary = "digitsboundary"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="seven.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + seven_png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    result = cluster.request("POST", "/upload", form, f"multipart/form-data; boundary={boundary}")
    assert result.status == 200
    assert 'data-testid="result-digit">7<' in result.body.decode()
    prediction_id = form_prediction_id(result.body.decode())
    thanks = cluster.request(
        "POST",
        "/upload/feedback",
        f"prediction_id={prediction_id}&label=4".encode(),
        "application/x-www-form-urlencoded",
    )
    assert thanks.status == 201
    assert thanks.replica != result.replica


def load_while(cluster: Cluster, seven_png: bytes, act: Callable[[], None]) -> tuple[list[str], list[tuple[str, int]]]:
    """Four clients predicting and correcting for 6 s, with act() 2 s in: the corrections acknowledged, and the
    requests that failed."""
    acknowledged: list[str] = []
    failures: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = time.monotonic() + 6

    def load() -> None:
        i = 0
        while time.monotonic() < stop:
            p = cluster.predict(seven_png)
            if p.status != 200:
                with lock:
                    failures.append(("predict", p.status))
                continue
            c = cluster.correct(p.json()["prediction_id"], i % 10)
            with lock:
                if c.status == 201:
                    acknowledged.append(c.json()["prediction_id"])
                else:
                    failures.append(("correct", c.status))
            i += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    act()
    for t in threads:
        t.join()
    return acknowledged, failures


def test_a_replica_stopped_under_load_loses_nothing(cluster, seven_png):
    """SIGTERM, as Kubernetes and compose stop a replica: it finishes what it has, and nginx sends the rest on."""
    before = len(cluster.rows())
    replica = cluster.replicas[2]
    acknowledged, failures = load_while(cluster, seven_png, replica.terminate)
    assert replica.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn ends on the signal it was sent, once done
    assert failures == []
    assert len(acknowledged) > 50
    assert len(cluster.rows()) == before + len(acknowledged)  # every 201 is stored, once


@pytest.mark.parametrize("path", ["/predict", "/feedback"])
def test_a_post_that_a_replica_drops_unread_goes_to_the_next(cluster, seven_png, path):
    """What uvicorn does, when told to stop, to a connection it has accepted but not yet read: closes it with
    the request unread (a reset). A SIGTERM meets one now and then; the dropper here does it every time."""
    requests: list[bytes] = []

    def drop(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        requests.append(conn.recv(65536))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset, not a FIN
        conn.close()

    replica = cluster.replica_ports[1]
    prediction_id = cluster.predict(seven_png).json()["prediction_id"]
    before = len(cluster.rows())
    workdir = Path(tempfile.mkdtemp(prefix="digits-nginx-"))
    workdir.chmod(0o755)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        dropper = threading.Thread(target=drop, args=(listener,), daemon=True)
        dropper.start()
        dropper_address = f"127.0.0.1:{listener.getsockname()[1]}"
        port, nginx = start_nginx(workdir, [listener.getsockname()[1], replica])  # round robin starts at the first
        try:
            # nginx writes its pid once it listens; a request to see whether it is up would go to the dropper.
            deadline = time.monotonic() + 10
            while not (workdir / "nginx.pid").exists():
                assert nginx.poll() is None, (workdir / "nginx.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            through = Cluster(port, [], [], cluster.database)
            answer = through.predict(seven_png) if path == "/predict" else through.correct(prediction_id, 3)
            dropper.join(timeout=10)
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(timeout=30)
            shutil.rmtree(workdir, ignore_errors=True)
    assert requests[0].startswith(f"POST {path} ".encode())  # it reached the dropper
    assert answer.status == (200 if path == "/predict" else 201), answer.body
    assert answer.replica == f"{dropper_address}, 127.0.0.1:{replica}"
    assert len(cluster.rows()) == before + (path == "/feedback")


def test_a_replica_killed_under_load_loses_nothing(cluster, seven_png):
    """SIGKILL: nginx sends what the replica held on to another, as every POST here is safe to repeat."""
    before = len(cluster.rows())
    acknowledged, failures = load_while(cluster, seven_png, lambda: cluster.replicas[0].send_signal(signal.SIGKILL))
    assert failures == []
    assert len(acknowledged) > 50
    # A correction that the replica stored just before it died, sent again, is the same row.
    assert len(cluster.rows()) == before + len(acknowledged)
    alive = zip(cluster.replica_ports, cluster.replicas, strict=True)
    survivors = {f"127.0.0.1:{port}" for port, replica in alive if replica.poll() is None}
    answers = [cluster.predict(seven_png) for _ in range(20)]
    assert all(a.status == 200 for a in answers)
    assert {a.replica for a in answers} == survivors
