"""Users' corrections: recorded through the API and the page, stored safely, and learned from."""

import io
import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import create_engine, select, text, update

from digits.feedback.ids import Seen, client_key, load_secret
from digits.feedback.store import ACCEPTED, FeedbackStore, TooManyCorrections, corrections
from digits.imaging.png import encode
from main import app
from tests.helpers import form_prediction_id, rows


def test_correction_round_trip_through_the_api(fresh_client, db_url, seven_png):
    p = fresh_client.post("/predict", files={"file": ("seven.png", seven_png, "image/png")}).json()
    r = fresh_client.post("/feedback", json={"prediction_id": p["prediction_id"], "label": 1})
    assert r.status_code == 201
    assert r.json()["predicted"] == p["digit"]
    assert r.json()["label"] == 1
    [row] = rows(db_url)
    assert row["label"] == 1
    assert row["predicted"] == 7
    assert row["prediction_id"] == fresh_client.app.state.worker.ids.read(p["prediction_id"]).key
    assert row["confidence"] == p["confidence"]  # what was shown
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
        "client",
        "review",
    }  # no client address (a keyed hash of it), no original file
    assert row["client"] == client_key(fresh_client.app.state.worker.secret, "testclient")
    assert "testclient" not in str(row["client"])
    assert row["review"] == "pending"  # untrusted until an operator accepts it
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
        (
            {"prediction_id": "x" * 66_000, "label": 3},
            422,
            "prediction_id must be the one the prediction answered with",
        ),
        ({"prediction_id": "x" * 70_000, "label": 3}, 413, "send only the prediction_id"),
        ({"prediction_id": "x", "label": 10}, 422, "the right digit, 0 to 9"),
        ({"prediction_id": "x", "label": -1}, 422, "the right digit, 0 to 9"),
        ({"prediction_id": "x", "label": "seven"}, 422, "as a string of digits"),
        ({"label": 3}, 422, "prediction_id is missing"),
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


def test_a_client_that_floods_corrections_is_stopped(db_url, monkeypatch, seven_png):
    monkeypatch.setenv("FEEDBACK_PER_HOUR", "5")
    with TestClient(app) as c:
        answers = [c.post("/feedback", json={"prediction_id": predict_id(c, seven_png), "label": 1}) for _ in range(8)]
    assert [a.status_code for a in answers] == [201] * 5 + [429] * 3
    assert answers[-1].headers["retry-after"] == "3600"
    assert "5 corrections in the last hour" in answers[-1].json()["detail"]
    assert len(rows(db_url)) == 5


def a_seven(i: int) -> Seen:
    """The i-th prediction of a 7, for tests of the store that need no real image."""
    return Seen(f"{i:032x}", b"png", 7, 0.9, "0" * 64)


def test_each_client_has_its_own_hour(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    for i in range(3):
        store.record(a_seven(i), 1, "flooder", per_hour=3)
    with pytest.raises(TooManyCorrections):
        store.record(a_seven(9), 1, "flooder", per_hour=3)
    store.record(a_seven(10), 1, "someone else", per_hour=3)
    numbers = Seen(f"{11:032x}", b"png", "17", 0.9, "0" * 64)  # whole numbers count towards the same hour
    with pytest.raises(TooManyCorrections):
        store.record(numbers, "11", "flooder", per_hour=3)


def test_a_clients_hour_moves_on(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    for i in range(2):
        store.record(a_seven(i), 1, "flooder", per_hour=2)
    with pytest.raises(TooManyCorrections):
        store.record(a_seven(2), 1, "flooder", per_hour=2)
    with store.engine.begin() as conn:  # an hour and a minute pass
        for row in conn.execute(select(corrections.c.id, corrections.c.created_at)).all():
            moved = row.created_at - timedelta(minutes=61)
            conn.execute(update(corrections).where(corrections.c.id == row.id).values(created_at=moved))
    store.record(a_seven(2), 1, "flooder", per_hour=2)


def test_corrections_are_timed_in_utc_whatever_the_local_zone(tmp_path, monkeypatch):
    """Replicas in different zones share one database and one hour per client: times are UTC."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    try:
        store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
        store.record(a_seven(0), 1, "someone", per_hour=2)
        with store.engine.connect() as conn:
            stored = conn.execute(select(corrections.c.created_at)).scalar_one()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert abs(stored.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)


def test_a_client_is_its_address_hashed_with_the_secret():
    secret = b"s" * 32
    assert client_key(secret, "2001:db8:1:2::1") == client_key(secret, "2001:db8:1:2:ffff::9")  # one /64
    assert client_key(secret, "2001:db8:1:2::1") != client_key(secret, "2001:db8:1:3::1")
    assert client_key(secret, "192.0.2.1") != client_key(secret, "192.0.2.2")
    assert client_key(secret, "192.0.2.1") != client_key(b"t" * 32, "192.0.2.1")
    assert "192.0.2.1" not in client_key(secret, "192.0.2.1")
    assert len(client_key(secret, "2001:db8:1:2::1")) == 32  # the width of the client column


def test_a_short_secret_file_stops_the_start(tmp_path):
    (tmp_path / "secret").write_bytes(b"guessable")
    with pytest.raises(ValueError, match="fewer than 16"):
        load_secret(path=tmp_path / "secret")


@pytest.mark.timed
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_huge_correction_is_refused_before_it_is_read(fresh_client, db_url, chunked):
    body = b'{"prediction_id": "' + b"a" * 20_000_000 + b'", "label": 1}'
    content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    start = time.monotonic()
    r = fresh_client.post("/feedback", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert time.monotonic() - start < 2
    assert r.headers["content-type"] == "application/json"
    assert r.headers["connection"] == "close"  # the rest of the body is never read, so the connection can't be kept
    assert "prediction_id" in r.json()["detail"]
    assert rows(db_url) == []


def test_errors_never_echo_the_input(fresh_client):
    r = fresh_client.post("/feedback", json={"prediction_id": "x", "label": "9" * 60_000})
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str)
    assert "label" in r.json()["detail"]
    assert len(r.content) < 1000


def test_the_operators_figures_can_be_kept_to_the_operators(db_url, monkeypatch):
    monkeypatch.setenv("STATS_TOKEN", "operators-only-token")
    with TestClient(app) as c:
        for path in ("/metrics", "/feedback/stats"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert "STATS_TOKEN" in c.get(path).json()["detail"]
            assert c.get(path, headers={"Authorization": "Bearer operators-only-token"}).status_code == 200


def test_promoting_swaps_the_served_weights_whole(tmp_path, monkeypatch):
    from digits.inference.predictor import Predictor
    from digits.inference.weights import save_weights
    from digits.training import finetune

    shipped = Predictor()
    served = tmp_path / "mnist_mlp.safetensors"
    monkeypatch.setattr(finetune, "DEFAULT_WEIGHTS", served)
    candidate = tmp_path / "feedback.safetensors"
    save_weights(shipped.state, candidate, shipped.metadata | {"feedback": "{}"})
    finetune.promote(candidate)
    assert Predictor(served).sha256 == Predictor(candidate).sha256  # the check at start-up passes
    not_tuned = tmp_path / "other.safetensors"
    save_weights(shipped.state, not_tuned, {"seed": "0"})
    with pytest.raises(SystemExit, match=r"not made by train\.py feedback"):
        finetune.promote(not_tuned)


def test_a_database_from_before_reviews_is_migrated(tmp_path):
    """Schema 2, as the service stored corrections before: its rows wait for review, and new ones are counted."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with create_engine(url).begin() as conn:
        conn.execute(text("CREATE TABLE schema_version (version INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO schema_version VALUES (1), (2)"))
        for table, image, kind in (("corrections", "image_png", "SMALLINT"), ("number_corrections", "crops_png",
                                                                                  "VARCHAR(64)")):  # fmt: skip
            conn.execute(text(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, prediction_id VARCHAR(32) NOT NULL UNIQUE, "
                f"{image} BLOB NOT NULL, predicted {kind} NOT NULL, confidence FLOAT NOT NULL, label {kind} NOT NULL, "
                "model_sha256 VARCHAR(64) NOT NULL, created_at DATETIME NOT NULL)"
            ))  # fmt: skip
        conn.execute(text(
            "INSERT INTO corrections VALUES (1, 'old', :png, 7, 0.9, 1, :sha, '2026-11-01 00:00:00')"
        ), {"png": encode(np.zeros((28, 28), np.uint8)), "sha": "0" * 64})  # fmt: skip
    store = FeedbackStore(url)
    [old] = store.listed()
    assert old.label == "1"
    assert [row["client"] for row in rows(url)] == [None]  # sent before clients were counted
    assert store.all() == []  # never reviewed, so never learned from
    store.record(Seen("1" * 32, b"png", 3, 0.5, "0" * 64), 8, "someone", per_hour=1)
    with pytest.raises(TooManyCorrections):
        store.record(Seen("2" * 32, b"png", 3, 0.5, "0" * 64), 8, "someone", per_hour=1)
    with create_engine(url).connect() as conn:
        assert conn.execute(text("SELECT max(version) FROM schema_version")).scalar() == 3


def test_accuracy_on_corrections_is_counted_per_model(tmp_path):
    """What `train.py feedback` reports: for each model, its accepted corrections and how many confirmed it."""
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    old, new = "a" * 64, "b" * 64
    made: list[tuple[Seen, int | str]] = [
        (Seen(f"{1:032x}", b"png", 7, 0.9, old), 1),
        (Seen(f"{2:032x}", b"png", 7, 0.9, old), 7),
        (Seen(f"{3:032x}", b"png", "17", 0.9, new), "17"),
        (Seen(f"{4:032x}", b"png", 3, 0.9, new), 8),
    ]
    for seen, label in made:
        row = store.record(seen, label, "someone", per_hour=10)
        store.judge("number_corrections" if seen.number else "corrections", row, ACCEPTED)
    store.record(Seen(f"{5:032x}", b"png", 7, 0.9, old), 7, "someone", per_hour=10)  # pending: not counted
    assert store.by_model() == {"a" * 12: (2, 1), "b" * 12: (2, 1)}
    assert [c.model for c in store.listed()] == ["a" * 12]
