"""Users' corrections: recorded through the API and the page, stored safely, and learned from."""

import http.client
import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import create_engine, text
from torchvision.datasets.mnist import read_image_file, read_label_file

from conftest import ROOT, encode, free_port
from feedback import FeedbackStore, Seen
from main import app


@pytest.fixture
def db_url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture
def fresh_client(db_url):
    with TestClient(app) as c:
        yield c


def rows(url: str) -> list[dict]:
    with create_engine(url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM corrections ORDER BY id"))]


def test_correction_round_trip_through_the_api(fresh_client, db_url, seven_png):
    p = fresh_client.post("/predict", files={"file": ("seven.png", seven_png, "image/png")}).json()
    r = fresh_client.post("/feedback", json={"prediction_id": p["prediction_id"], "label": 1})
    assert r.status_code == 201
    assert r.json()["predicted"] == p["digit"] and r.json()["label"] == 1
    [row] = rows(db_url)
    assert row["prediction_id"] == p["prediction_id"] and row["label"] == 1 and row["predicted"] == 7
    assert row["confidence"] == pytest.approx(p["confidence"])
    assert row["model_sha256"] == fresh_client.get("/model").json()["sha256"]
    assert Image.open(io.BytesIO(row["image_png"])).size == (28, 28)  # what the model saw, not the upload
    assert set(row) == {"id", "prediction_id", "image_png", "predicted", "confidence", "label", "model_sha256",
                        "created_at"}  # no client address, no original file
    stats = fresh_client.get("/feedback/stats").json()
    assert stats["total"] == 1 and stats["by_label"]["1"] == 1 and stats["by_predicted"]["7"] == 1


def test_a_second_click_replaces_the_label(fresh_client, db_url, seven_png):
    p = fresh_client.post("/predict", content=seven_png, headers={"Content-Type": "image/png"}).json()
    for label in (1, 2):
        assert fresh_client.post("/feedback", json={"prediction_id": p["prediction_id"], "label": label}).status_code == 201
    assert [r["label"] for r in rows(db_url)] == [2]


def test_batch_predictions_can_be_corrected_too(fresh_client, db_url, seven_png):
    items = fresh_client.post("/predict/batch", files=[("files", ("a.png", seven_png, "image/png"))] * 2).json()
    ids = [p["prediction_id"] for p in items["predictions"]]
    assert len(set(ids)) == 2
    assert fresh_client.post("/feedback", json={"prediction_id": ids[1], "label": 9}).status_code == 201


def test_correction_round_trip_through_the_page(fresh_client, db_url, seven_png):
    page = fresh_client.post("/upload", files={"file": ("seven.png", seven_png, "image/png")})
    assert page.status_code == 200
    assert "Wrong? The right digit is:" in page.text
    prediction_id = re.search(r'name="prediction_id" value="([0-9a-f]+)"', page.text).group(1)
    thanks = fresh_client.post("/upload/feedback", data={"prediction_id": prediction_id, "label": "4"})
    assert thanks.status_code == 201
    assert "<strong>4</strong>" in thanks.text
    assert [r["label"] for r in rows(db_url)] == [4]


@pytest.mark.parametrize("body, status, hint", [
    ({"prediction_id": "0" * 32, "label": 3}, 404, "unknown or expired"),
    ({"prediction_id": "x", "label": 10}, 422, "less than or equal to 9"),
    ({"prediction_id": "x", "label": -1}, 422, "greater than or equal to 0"),
    ({"prediction_id": "x", "label": "seven"}, 422, "valid integer"),
    ({"label": 3}, 422, "Field required"),
])
def test_bad_corrections_are_4xx(fresh_client, body, status, hint):
    r = fresh_client.post("/feedback", json=body)
    assert r.status_code == status
    assert hint in json.dumps(r.json()["detail"])


def test_an_expired_prediction_can_no_longer_be_corrected(db_url, monkeypatch, seven_png):
    monkeypatch.setenv("FEEDBACK_TTL_S", "0.2")
    with TestClient(app) as c:
        p = c.post("/predict", content=seven_png, headers={"Content-Type": "image/png"}).json()
        time.sleep(0.4)
        r = c.post("/feedback", json={"prediction_id": p["prediction_id"], "label": 1})
    assert r.status_code == 404
    assert "expired" in r.json()["detail"]


def test_the_window_is_bounded(db_url, monkeypatch, seven_png):
    monkeypatch.setenv("FEEDBACK_WINDOW", "3")
    with TestClient(app) as c:
        ids = [c.post("/predict", content=seven_png, headers={"Content-Type": "image/png"}).json()["prediction_id"]
               for _ in range(5)]
        assert c.post("/feedback", json={"prediction_id": ids[0], "label": 1}).status_code == 404
        assert c.post("/feedback", json={"prediction_id": ids[-1], "label": 1}).status_code == 201


def start_server(db_url: str, workers: int = 1) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "main:app", "--port", str(port), "--workers",
                             str(workers), "--no-access-log"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def correct_many(port: int, png: bytes, n: int, acknowledged=None) -> int:
    """Predict and correct n times over one keep-alive connection (so the same worker sees both)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    done = 0
    for i in range(n):
        conn.request("POST", "/predict", body=png, headers={"Content-Type": "image/png"})
        prediction_id = json.loads(conn.getresponse().read())["prediction_id"]
        conn.request("POST", "/feedback", body=json.dumps({"prediction_id": prediction_id, "label": i % 10}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 201
        done += 1
        if acknowledged is not None:
            acknowledged.append(prediction_id)
    return done


def test_concurrent_corrections_from_several_processes_lose_nothing(tmp_path, seven_png):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    proc, port = start_server(url, workers=2)
    try:
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            counts = pool.starmap(correct_many, [(port, seven_png, 25)] * 4)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert sum(counts) == 100
    assert len(rows(url)) == 100


def test_killed_during_writes_the_database_stays_intact(tmp_path, seven_png):
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    proc, port = start_server(url)
    acknowledged: list[str] = []

    def until_killed() -> None:
        try:
            correct_many(port, seven_png, 10_000, acknowledged)
        except (OSError, http.client.HTTPException):
            pass  # the server is gone mid-request

    writer = threading.Thread(target=until_killed)
    writer.start()
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    writer.join()
    assert len(acknowledged) > 5
    db = sqlite3.connect(tmp_path / "crash.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {r[0] for r in db.execute("SELECT prediction_id FROM corrections")}
    db.close()
    assert set(acknowledged) <= stored  # every correction answered 201 survived the kill
    proc, port = start_server(url)  # and the service starts again on it
    try:
        assert correct_many(port, seven_png, 3) == 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def synthetic_corrections(url: str, mnist_test, n: int = 300) -> None:
    """A user whose 1s the model misreads: 1s drawn lying down, each corrected to 1."""
    images, labels = mnist_test
    store = FeedbackStore(url)
    ones = images[labels == 1][:n]
    for i, one in enumerate(ones):
        png = encode(np.ascontiguousarray(np.rot90(one)))
        store.record(f"{i:032x}", Seen(png, 7, 0.5, "0" * 64, 0.0), 1)


def run_train(*args: str, env_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": env_url}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


def test_retraining_moves_the_model_toward_the_corrections(tmp_path, mnist_test):
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    synthetic_corrections(url, mnist_test)
    out = tmp_path / "tuned.safetensors"
    r = run_train("--feedback", "--epochs", "1", "--subset", "10000", "--quiet", "--no-report", "--out", str(out),
                  env_url=url)
    assert r.returncode == 0, r.stderr
    found = re.search(r"held-out corrections: ([\d.]+)% -> ([\d.]+)%", r.stdout)
    assert found, r.stdout
    before, after = map(float, found.groups())
    assert after > before + 20
    mnist = re.search(r"MNIST test: ([\d.]+)% -> ([\d.]+)%", r.stdout)
    assert float(mnist.group(2)) > 98.5


def test_no_corrections_is_said_plainly(tmp_path):
    r = run_train("--feedback", "--quiet", env_url=f"sqlite:///{tmp_path / 'empty.db'}")
    assert r.returncode == 0
    assert "no corrections" in r.stdout


def test_export_in_mnist_layout(tmp_path, mnist_test):
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    synthetic_corrections(url, mnist_test, n=12)
    r = run_train("--export-feedback", str(tmp_path / "out"), env_url=url)
    assert r.returncode == 0, r.stderr
    images = read_image_file(str(tmp_path / "out" / "feedback-images-idx3-ubyte"))
    labels = read_label_file(str(tmp_path / "out" / "feedback-labels-idx1-ubyte"))
    assert images.shape == (12, 28, 28) and labels.tolist() == [1] * 12


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def store_writes(url: str, start: int, n: int) -> None:
    store = FeedbackStore(url)
    for i in range(start, start + n):
        store.record(f"{i:032x}", Seen(b"png", i % 10, 0.9, "0" * 64, 0.0), (i + 1) % 10)


@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed (Debian package postgresql)")
def test_the_same_code_on_a_real_postgresql():
    bindir = postgres_bin()
    # Not under pytest's tmp_path: as root, PostgreSQL runs as the postgres user, who can't enter root's 0700 dirs.
    data = Path(tempfile.mkdtemp(prefix="digits-pg-"))
    user = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]  # initdb refuses to run as root
    if user:
        shutil.chown(data, "postgres")
    subprocess.run(user + [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    port = free_port()
    subprocess.run(user + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "log"), "-o",
                           f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        with multiprocessing.get_context("spawn").Pool(3) as pool:  # three replicas migrating and writing at once
            pool.starmap(store_writes, [(url, 0, 40), (url, 100, 40), (url, 200, 40)])
        stats = FeedbackStore(url).stats()
        assert stats["total"] == 120
        assert sum(stats["by_predicted"].values()) == 120
    finally:
        subprocess.run(user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
