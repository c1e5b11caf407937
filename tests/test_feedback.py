"""Users' corrections: recorded through the API and the page, stored safely, and learned from."""

import contextlib
import http.client
import io
import json
import multiprocessing
import multiprocessing.pool
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import create_engine, text
from torchvision.datasets.mnist import read_image_file, read_label_file

from conftest import ROOT, encode, form_prediction_id, free_port
from feedback import FeedbackStore, PredictionIds, Seen, load_secret
from main import app


def rows(url: str) -> list[dict]:
    with create_engine(url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM corrections ORDER BY id"))]


def test_correction_round_trip_through_the_api(fresh_client, db_url, seven_png):
    p = fresh_client.post("/predict", files={"file": ("seven.png", seven_png, "image/png")}).json()
    r = fresh_client.post("/feedback", json={"prediction_id": p["prediction_id"], "label": 1})
    assert r.status_code == 201
    assert r.json()["predicted"] == p["digit"]
    assert r.json()["label"] == 1
    [row] = rows(db_url)
    assert row["label"] == 1
    assert row["predicted"] == 7
    assert row["prediction_id"] == fresh_client.app.state.ids.read(p["prediction_id"]).key
    assert row["confidence"] == pytest.approx(p["confidence"])
    assert row["model_sha256"] == fresh_client.get("/model").json()["sha256"]
    assert Image.open(io.BytesIO(row["image_png"])).size == (28, 28)  # what the model saw, not the upload
    assert set(row) == {
        "id",
        "prediction_id",
        "image_png",
        "predicted",
        "confidence",
        "label",
        "model_sha256",
        "created_at",
    }  # no client address, no original file
    stats = fresh_client.get("/feedback/stats").json()
    assert stats["total"] == 1
    assert stats["by_label"]["1"] == 1
    assert stats["by_predicted"]["7"] == 1


def test_a_second_click_replaces_the_label(fresh_client, db_url, seven_png):
    p = fresh_client.post("/predict", content=seven_png, headers={"Content-Type": "image/png"}).json()
    for label in (1, 2):
        assert (
            fresh_client.post("/feedback", json={"prediction_id": p["prediction_id"], "label": label}).status_code
            == 201
        )
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
    prediction_id = form_prediction_id(page.text)
    thanks = fresh_client.post("/upload/feedback", data={"prediction_id": prediction_id, "label": "4"})
    assert thanks.status_code == 201
    assert "<strong>4</strong>" in thanks.text
    assert [r["label"] for r in rows(db_url)] == [4]


@pytest.mark.parametrize(
    ("body", "status", "hint"),
    [
        ({"prediction_id": "0" * 32, "label": 3}, 400, "not issued by this service"),
        ({"prediction_id": "x" * 70_000, "label": 3}, 422, "at most 65536 characters"),
        ({"prediction_id": "x", "label": 10}, 422, "less than or equal to 9"),
        ({"prediction_id": "x", "label": -1}, 422, "greater than or equal to 0"),
        ({"prediction_id": "x", "label": "seven"}, 422, "valid integer"),
        ({"label": 3}, 422, "Field required"),
    ],
)
def test_bad_corrections_are_4xx(fresh_client, db_url, body, status, hint):
    r = fresh_client.post("/feedback", json=body)
    assert r.status_code == status
    assert hint in json.dumps(r.json()["detail"])
    assert rows(db_url) == []


def predict_id(client: TestClient, png: bytes) -> str:
    r = client.post("/predict", content=png, headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    return r.json()["prediction_id"]


def flip(text: str, i: int) -> str:
    return text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]


def test_a_tampered_id_is_refused_and_nothing_is_stored(fresh_client, db_url, seven_png):
    prediction_id = predict_id(fresh_client, seven_png)
    # The payload (its digit, its image), the time, the signature, and the id cut short.
    for bad in (
        flip(prediction_id, 10),
        flip(prediction_id, len(prediction_id) - 30),
        flip(prediction_id, -1),
        prediction_id[:-5],
    ):
        r = fresh_client.post("/feedback", json={"prediction_id": bad, "label": 3})
        assert r.status_code == 400, bad
        assert "not issued by this service" in r.json()["detail"]
    assert rows(db_url) == []


def test_an_id_signed_with_another_secret_is_refused(db_url, monkeypatch, seven_png):
    monkeypatch.setenv("PREDICTION_SECRET", "one secret, long enough")
    with TestClient(app) as c:
        prediction_id = predict_id(c, seven_png)
    monkeypatch.setenv("PREDICTION_SECRET", "another secret, as long")
    with TestClient(app) as c:
        r = c.post("/feedback", json={"prediction_id": prediction_id, "label": 1})
    assert r.status_code == 400
    assert rows(db_url) == []


def test_a_restarted_service_accepts_its_earlier_ids(db_url, seven_png):
    with TestClient(app) as c:
        prediction_id = predict_id(c, seven_png)
    with TestClient(app) as c:  # nothing of the first one's memory survives, only the secret file
        assert c.post("/feedback", json={"prediction_id": prediction_id, "label": 1}).status_code == 201
    assert [r["label"] for r in rows(db_url)] == [1]


def test_an_expired_prediction_can_no_longer_be_corrected(db_url, monkeypatch, seven_png):
    monkeypatch.setenv("FEEDBACK_TTL_S", "1")
    with TestClient(app) as c:
        prediction_id = predict_id(c, seven_png)
        time.sleep(2.1)  # the signed time has a resolution of one second
        r = c.post("/feedback", json={"prediction_id": prediction_id, "label": 1})
    assert r.status_code == 404
    assert "expired" in r.json()["detail"]
    assert "taken for 1 s after" in r.json()["detail"]
    assert rows(db_url) == []


def test_a_short_prediction_secret_stops_the_start(db_url, monkeypatch):
    monkeypatch.setenv("PREDICTION_SECRET", "short")
    with pytest.raises(ValueError, match="shorter than 16 bytes"), TestClient(app):
        pass


def secret_of(path: str) -> bytes:
    return load_secret(Path(path))


def test_workers_starting_together_share_one_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("PREDICTION_SECRET", raising=False)
    path = tmp_path / "data" / "prediction_secret"
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        secrets = pool.map(secret_of, [str(path)] * 8)
    assert len(set(secrets)) == 1
    assert len(secrets[0]) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert [f.name for f in path.parent.iterdir()] == ["prediction_secret"]  # no temporary files left


def start_server(db_url: str, workers: int = 1) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url}
    proc = subprocess.Popen(
        [sys.executable, "serve.py", "--port", str(port), "--workers", str(workers)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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


def post(port: int, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    """One request on a fresh connection, so that any worker may take it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def correct_many(port: int, png: bytes, n: int, acknowledged=None) -> int:
    """Predict and correct n times, every request on a connection of its own."""
    done = 0
    for i in range(n):
        status, body = post(port, "/predict", png, "image/png")
        assert status == 200
        prediction_id = json.loads(body)["prediction_id"]
        status, _ = post(
            port,
            "/feedback",
            json.dumps({"prediction_id": prediction_id, "label": i % 10}).encode(),
            "application/json",
        )
        assert status == 201
        done += 1
        if acknowledged is not None:
            acknowledged.append(prediction_id)
    return done


def test_two_workers_take_every_correction_on_fresh_connections(tmp_path, seven_png):
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


def test_a_replayed_correction_makes_one_row(tmp_path, seven_png):
    url = f"sqlite:///{tmp_path / 'replay.db'}"
    proc, port = start_server(url, workers=2)
    try:
        status, body = post(port, "/predict", seven_png, "image/png")
        prediction_id = json.loads(body)["prediction_id"]
        replay = [json.dumps({"prediction_id": prediction_id, "label": label}).encode() for label in (1, 2, 3, 3)]
        with multiprocessing.pool.ThreadPool(4) as pool:
            answers = pool.starmap(post, [(port, "/feedback", b, "application/json") for b in replay])
        assert {status for status, _ in answers} == {201}
        assert len({json.loads(b)["id"] for _, b in answers}) == 1
        status, _ = post(port, "/feedback", replay[-1], "application/json")  # and once more, later
        assert status == 201
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    [row] = rows(url)
    assert row["label"] == 3


def test_killed_during_writes_the_database_stays_intact(tmp_path, seven_png):
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    proc, port = start_server(url)
    acknowledged: list[str] = []

    def until_killed() -> None:
        with contextlib.suppress(OSError, http.client.HTTPException):  # the server is gone mid-request
            correct_many(port, seven_png, 10_000, acknowledged)

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
    ids = PredictionIds(load_secret(), ttl_s=3600)  # the secret the server shared through data/
    assert {ids.read(a).key for a in acknowledged} <= stored  # every correction answered 201 survived the kill
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
        store.record(Seen(f"{i:032x}", png, 7, 0.5, "0" * 64), 1)


def run_train(*args: str, env_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": env_url}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )


def test_retraining_moves_the_model_toward_the_corrections(tmp_path, mnist_test):
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    synthetic_corrections(url, mnist_test)
    out = tmp_path / "tuned.safetensors"
    r = run_train(
        "--feedback", "--epochs", "1", "--subset", "10000", "--quiet", "--no-report", "--out", str(out), env_url=url
    )
    assert r.returncode == 0, r.stderr
    found = re.search(r"held-out corrections: ([\d.]+)% -> ([\d.]+)%", r.stdout)
    assert found, r.stdout
    before, after = map(float, found.groups())
    assert after > before + 20
    mnist = re.search(r"MNIST test: ([\d.]+)% -> ([\d.]+)%", r.stdout)
    assert mnist, r.stdout
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
    assert images.shape == (12, 28, 28)
    assert labels.tolist() == [1] * 12


def store_writes(url: str, start: int, n: int) -> None:
    store = FeedbackStore(url)
    for i in range(start, start + n):
        store.record(Seen(f"{i:032x}", b"png", i % 10, 0.9, "0" * 64), (i + 1) % 10)


def test_the_same_code_on_a_real_postgresql(postgres_database):
    url = postgres_database()
    with multiprocessing.get_context("spawn").Pool(3) as pool:  # three replicas migrating and writing at once
        pool.starmap(store_writes, [(url, 0, 40), (url, 100, 40), (url, 200, 40)])
    stats = FeedbackStore(url).stats()
    assert stats["total"] == 120
    assert sum(stats["by_predicted"].values()) == 120
