"""Every endpoint and every error, through TestClient."""

import base64
import hashlib
import io
import re

import numpy as np
import pytest
from PIL import Image

from digits.imaging.png import encode, to_png
from digits.inference.predictor import NOT_A_DIGIT
from tests.helpers import rows


def png_file(data: bytes, name: str = "digit.png") -> dict:
    return {"file": (name, data, "image/png")}


def assert_prediction(body: dict, digit: int) -> None:
    assert body["digit"] == digit
    assert len(body["probabilities"]) == 10
    assert sum(body["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert body["confidence"] == pytest.approx(max(body["probabilities"]), abs=1e-5)
    seen = Image.open(io.BytesIO(base64.b64decode(body["input_image"])))
    assert seen.size == (28, 28)


def test_input_image_is_a_valid_png_of_the_exact_pixels():
    image = np.random.default_rng(0).random((28, 28), dtype=np.float32)
    image[0, :2] = 0, 1
    png = to_png(image)
    Image.open(io.BytesIO(png)).verify()  # every chunk's CRC
    seen = Image.open(io.BytesIO(png))
    assert (seen.mode, seen.size) == ("L", (28, 28))
    assert np.array_equal(np.asarray(seen), np.rint(image * 255).astype(np.uint8))


def test_root_redirects_to_upload(client):
    r = client.get("/", follow_redirects=False)
    assert r.status_code in (302, 307)
    assert r.headers["location"] == "/upload"


def test_upload_page_has_the_form(client):
    r = client.get("/upload")
    assert r.status_code == 200
    assert 'enctype="multipart/form-data"' in r.text
    assert 'name="file"' in r.text
    assert 'accept="image/*"' in r.text


def test_predict_multipart(client, seven_png):
    r = client.post("/predict", files=png_file(seven_png))
    assert r.status_code == 200
    assert_prediction(r.json(), 7)


def test_predict_raw_body(client, seven_png):
    r = client.post("/predict", content=seven_png, headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    assert_prediction(r.json(), 7)


def test_predict_raw_body_as_octet_stream(client, seven_png):
    r = client.post("/predict", content=seven_png, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200
    assert r.json()["digit"] == 7


def test_batch_keeps_order_and_isolates_bad_files(client, mnist_test):
    images, labels = mnist_test
    files = [("files", (f"{i}.png", encode(images[i]), "image/png")) for i in range(5)]
    files.insert(2, ("files", ("bad.png", b"not an image", "image/png")))
    r = client.post("/predict/batch", files=files)
    assert r.status_code == 200
    predictions = r.json()["predictions"]
    assert len(predictions) == 6
    assert "not an image" in predictions[2]["error"]
    good = predictions[:2] + predictions[3:]
    assert [p["digit"] for p in good] == labels[:5].tolist()


def test_batch_over_the_limit_is_413(client, seven_png):
    files = [("files", (f"{i}.png", seven_png, "image/png")) for i in range(257)]
    r = client.post("/predict/batch", files=files)
    assert r.status_code == 413
    assert "at most 256" in r.json()["detail"]


def test_batch_needs_multipart(client, seven_png):
    r = client.post("/predict/batch", content=seven_png, headers={"Content-Type": "image/png"})
    assert r.status_code == 415
    assert "(curl -F files=@a.png -F files=@b.png)" in r.json()["detail"]


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": client.app.state.worker.predictor.sha256[:12]}


def test_model_metadata(client):
    r = client.get("/model")
    assert r.status_code == 200
    body = r.json()
    assert body["parameters"] == 235_146
    assert "784-256-128-10" in body["architecture"]
    assert body["test_accuracy"] >= 0.99
    assert len(body["sha256"]) == 64
    for key in ("val_accuracy", "epochs", "seed", "train_seconds", "device", "torch_version", "data_md5"):
        assert key in body["metadata"]
    meta = body["metadata"]  # what each value holds, not JSON inside a string
    assert isinstance(meta["val_accuracy"], float)
    assert isinstance(meta["epochs"], int)
    assert isinstance(meta["recipe"], dict)
    assert isinstance(meta["history"], list)
    assert meta["recipe"]["seed"] == meta["seed"]
    assert isinstance(meta["torch_version"], str)


def test_confidence_is_rounded_as_the_probabilities_are(client, mnist_test):
    images, _ = mnist_test
    for image in images[:20]:
        body = client.post("/predict", files=png_file(encode(image))).json()
        assert body["confidence"] == body["probabilities"][body["digit"]]
        assert all(round(p, 6) == p for p in body["probabilities"])


def test_feedback_that_is_not_json_is_a_400_that_says_so(client):
    r = client.post("/feedback", content=b'{"prediction_id": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("the body is not valid JSON")


def test_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "multipart/form-data" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]


def test_a_batch_without_files_is_422(client):
    r = client.post("/predict/batch", files={"file": ("a.png", b"x", "image/png")})  # the field is 'files'
    assert r.status_code == 422
    assert "'files'" in r.json()["detail"]


@pytest.mark.parametrize(
    ("data", "status", "hint"),
    [
        (b"hello, world", 400, "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, 400, "not an image"),
        (encode(Image.new("L", (64, 64), 255)), 422, "no digit found"),
    ],
    ids=["text", "png signature and zeros", "blank page"],
)
def test_bad_images(client, data, status, hint):
    r = client.post("/predict", files=png_file(data))
    assert r.status_code == status
    assert hint in r.json()["detail"]


def test_empty_file_is_400(client):
    r = client.post("/predict", files=png_file(b""))
    assert r.status_code == 400
    assert "empty" in r.json()["detail"]


def test_missing_file_field_is_422(client, seven_png):
    r = client.post("/predict", files={"image": ("a.png", seven_png, "image/png")})
    assert r.status_code == 422
    assert "field 'file'" in r.json()["detail"]


def test_empty_raw_body_is_422(client):
    r = client.post("/predict", content=b"", headers={"Content-Type": "image/png"})
    assert r.status_code == 422
    assert "the request has no image" in r.json()["detail"]


def test_two_files_to_predict_is_400(client, seven_png):
    r = client.post("/predict", files=[("file", ("a.png", seven_png, "image/png"))] * 2)
    assert r.status_code == 400
    assert "/predict/batch" in r.json()["detail"]


def test_unsupported_content_type_is_415(client):
    r = client.post("/predict", content=b'{"digit": 7}', headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    assert "curl -F file=@digit.png" in r.json()["detail"]


def test_body_over_the_limit_is_413(client):
    r = client.post("/predict", content=b"\0" * (10 * 1024 * 1024 + 1), headers={"Content-Type": "image/png"})
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]


def test_absurd_dimensions_are_413(client):
    r = client.post("/predict", files=png_file(encode(Image.new("1", (20_000, 20_000)))))
    assert r.status_code == 413
    assert "scale it down" in r.json()["detail"]


def test_upload_form_shows_the_result(client, seven_png):
    r = client.post("/upload", files=png_file(seven_png, "my seven.png"))
    assert r.status_code == 200
    assert 'data-testid="result-digit">7<' in r.text
    assert "my seven.png" in r.text
    assert r.text.count("<meter") == 10
    assert 'src="data:image/png;base64,' in r.text


def test_things_that_are_not_digits_are_answered_as_such(client, clothes_pngs, seven_png):
    files = [("files", (f"{i}.png", c, "image/png")) for i, c in enumerate(clothes_pngs)]
    r = client.post("/predict/batch", files=files)
    assert r.status_code == 200
    answers = r.json()["predictions"]
    not_digits = [a for a in answers if a["not_a_digit"]]
    assert len(not_digits) >= 15, [a["confidence"] for a in answers]  # the yardstick is in test_quality
    for a in not_digits:
        assert a["uncertain"] is True
        assert a["hint"] == NOT_A_DIGIT
    digit = client.post("/predict", files=png_file(seven_png)).json()
    assert digit["not_a_digit"] is False
    assert digit["hint"] is None


def test_upload_form_says_when_it_is_no_digit(client, clothes_pngs):
    told = 0
    for clothes in clothes_pngs:
        said = client.post("/predict", files=png_file(clothes)).json()["not_a_digit"]
        told += said
        r = client.post("/upload", files=png_file(clothes, "clothes.png"))
        assert r.status_code == 200
        # The page says what the API says, and still shows the probabilities, for the curious.
        assert ("<h1>That doesn't look like a digit</h1>" in r.text) is said
        assert ("<title>Not a digit" in r.text) is said
        assert r.text.count("<meter") == 10
    assert told >= 15


def test_upload_escapes_the_filename(client, seven_png):
    r = client.post("/upload", files=png_file(seven_png, "<script>alert(1)</script>.png"))
    assert r.status_code == 200
    assert "<script>alert(1)" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in r.text


def test_upload_of_a_bad_file_shows_the_form_with_the_reason(client):
    r = client.post("/upload", files={"file": ("notes.txt", b"just text", "text/plain")})
    assert r.status_code == 400
    assert "not an image" in r.text
    assert 'name="file"' in r.text
    assert "Traceback" not in r.text


def test_upload_without_a_file_shows_the_form(client):
    r = client.post("/upload", files={"other": ("a", b"x", "text/plain")})
    assert r.status_code == 422
    assert 'role="alert"' in r.text


def test_nothing_is_written_to_disk(client, seven_png, monkeypatch):
    import tempfile

    written = []
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, lambda *a, _name=name, **k: written.append(_name))
    big = encode(np.random.default_rng(0).integers(0, 256, (1500, 1500), dtype=np.uint8))
    assert len(big) > 1024 * 1024  # past Starlette's default 1 MB spool, which would go to a temp file
    # Read whole, and refused: nothing in noise stands out of the noise (ink.py).
    assert client.post("/predict", files=png_file(big)).status_code == 422
    assert client.post("/upload", files=png_file(seven_png)).status_code == 200
    assert written == []


def test_pages_and_answers_carry_the_security_headers(client):
    for r in (client.get("/upload"), client.get("/healthz"), client.post("/predict", content=b"")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
        policy = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy
        assert "script-src 'self';" in policy  # no inline script, no other origin
        assert "unsafe-inline" not in policy


def test_the_api_docs_allow_their_one_inline_script_by_hash(client):
    r = client.get("/docs")
    assert r.status_code == 200
    [script] = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in r.headers["content-security-policy"]
    assert "cdn" not in r.text.lower()
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', r.text):
        assert client.get(asset).status_code == 200, asset


def test_every_answer_names_the_model_that_gave_it(client, seven_png):
    """During a rollout two replicas may answer differently: each answer says which weights gave it."""
    model = client.app.state.worker.predictor.sha256[:12]
    upload = {"file": ("seven.png", seven_png, "image/png")}
    digit = client.post("/predict", files=upload).json()
    answers = [
        digit,
        client.post("/predict/number", files=upload).json(),
        client.post("/predict/batch", files=[("files", ("a.png", seven_png, "image/png"))]).json(),
        client.post("/feedback", json={"prediction_id": digit["prediction_id"], "label": 1}).json(),
        client.get("/feedback/stats").json(),
        client.get("/healthz").json(),
        client.get("/model").json(),
    ]
    assert [a["model"] for a in answers] == [model] * len(answers)
    assert answers[2]["predictions"][0]["model"] == model


def test_a_correction_stores_the_model_its_id_signed_not_one_it_claims(fresh_client, db_url, seven_png):
    digit = fresh_client.post("/predict", files={"file": ("seven.png", seven_png, "image/png")}).json()
    forged = {"prediction_id": digit["prediction_id"], "label": 2, "model": "0123456789ab"}
    stored = fresh_client.post("/feedback", json=forged).json()
    assert stored["model"] == digit["model"]
    [row] = rows(db_url)
    assert row["model_sha256"] == fresh_client.app.state.worker.predictor.sha256
