"""Whole numbers: test sets composed from MNIST's test digits, /predict/number, the hint on /predict, the CLI."""

import base64
import io
import json
import re
from collections import Counter

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from scipy import ndimage

from digits.feedback.store import ACCEPTED, FeedbackStore
from digits.imaging.groups import ink_groups
from digits.imaging.png import encode
from digits.inference.segment import read_number
from main import app
from tests.helpers import compose, form_prediction_id, render


def ink_boxes(ink: np.ndarray) -> list[tuple[int, int, int, int]]:
    """x, y, width and height of each connected mark in a boolean ink mask."""
    labelled, _ = ndimage.label(ink)
    return [(c.start, r.start, c.stop - c.start, r.stop - r.start) for r, c in ndimage.find_objects(labelled)]


def test_a_short_mark_joins_the_nearest_digit_rather_than_reading_as_one():
    ink = np.zeros((40, 60), np.float32)
    ink[5:35, 10:13] = 1  # a 1
    ink[5:8, 17:23] = 1  # a short bar beside it, sharing none of its columns, as a 5's bar drawn off to the side
    ink[5:35, 40:43] = 1  # another 1
    groups = ink_groups(ink)
    assert [(g.left, g.ink.shape[1]) for g in groups] == [(10, 13), (40, 3)]
    ink[5:8, 17:23] = 0
    ink[5:35, 17:20] = 1  # as tall as the others, it is a digit of its own
    assert len(ink_groups(ink)) == 3


def test_a_broken_stroke_adds_no_digit_to_a_number(predictor, mnist_test):
    images, labels = mnist_test
    page = np.zeros((40, 80), np.uint8)
    page[6:34, 4:32], page[6:34, 44:72] = images[0], images[1]
    page[8:11, 34:38] = 255  # a fleck of the first digit's stroke, apart from it
    reading = read_number(predictor, encode(Image.fromarray(255 - np.kron(page, np.ones((4, 4), np.uint8)))))
    assert reading.number == f"{labels[0]}{labels[1]}"


@pytest.mark.parametrize(
    ("gap", "scale"), [(8, 1), (8, 3), (-2, 1)], ids=["as drawn", "reduced before reading", "touching"]
)
def test_the_api_reads_a_number_with_boxes_in_the_upload(client, three_digits, mnist_test, gap, scale):
    data, truth, (width, height) = three_digits
    if gap < 0:  # one mark, split in three: each box is placed within the mark
        page = compose([mnist_test[0][i] for i in (0, 1, 2)], [gap, gap], np.random.default_rng(0))
        data = render(page, "paper", np.random.default_rng(0))
        width, height = Image.open(io.BytesIO(data)).size
    if scale != 1:  # over WORK_SIZE, so that the boxes are scaled back up to the upload's pixels
        width, height = width * scale, height * scale
        data = encode(Image.open(io.BytesIO(data)).resize((width, height), Image.Resampling.NEAREST))
    r = client.post("/predict/number", files={"file": ("number.png", data, "image/png")})
    assert r.status_code == 200
    body = r.json()
    assert body["number"] == truth
    assert [d["digit"] for d in body["digits"]] == [int(c) for c in truth]
    lefts = [d["box"][0] for d in body["digits"]]
    assert lefts == sorted(lefts)
    for d in body["digits"]:
        x, y, w, h = d["box"]
        assert 0 <= x < x + w <= width
        assert 0 <= y < y + h <= height
        assert Image.open(io.BytesIO(base64.b64decode(d["input_image"]))).size == (28, 28)
    # The product of the digits' confidences; each is rounded to 6 places in the answer.
    assert body["confidence"] == pytest.approx(np.prod([d["confidence"] for d in body["digits"]]), abs=1e-5)
    assert not any(d["uncertain"] for d in body["digits"])  # three clear digits
    if gap > 0:  # apart, the count is sure too; touching, parting the mark may be a close call (docs/api.md)
        assert body["uncertain"] is False
    # Each box holds its digit's ink, in the upload's own pixels: together they cover all of it, tightly.
    ink = np.asarray(Image.open(io.BytesIO(data)).convert("L")) < 128
    boxed = np.zeros_like(ink)
    for d in body["digits"]:
        x, y, w, h = d["box"]
        assert ink[y : y + h, x : x + w].mean() > 0.1
        boxed[y : y + h, x : x + w] = True
    assert (ink & boxed).sum() > 0.99 * ink.sum()
    assert boxed.sum() < 1.5 * sum(w * h for *_, w, h in ink_boxes(ink))


def test_predict_says_when_an_image_holds_several_digits(client, three_digits, seven_png):
    data, _, _ = three_digits
    several = client.post("/predict", content=data, headers={"Content-Type": "image/png"})
    assert several.status_code == 200
    assert several.json()["uncertain"] is True
    assert "/predict/number" in several.json()["hint"]
    one = client.post("/predict", content=seven_png, headers={"Content-Type": "image/png"})
    assert one.json()["hint"] is None


def test_blank_and_too_many_digits_are_422(client, three_digits, mnist_test, monkeypatch):
    blank = encode(np.full((60, 200), 255, np.uint8))
    r = client.post("/predict/number", content=blank, headers={"Content-Type": "image/png"})
    assert r.status_code == 422
    assert "no digit found" in r.json()["detail"]
    monkeypatch.setenv("MAX_NUMBER_DIGITS", "3")
    with TestClient(app) as limited:  # as many digits as the limit
        r = limited.post("/predict/number", content=three_digits[0], headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    monkeypatch.setenv("MAX_NUMBER_DIGITS", "2")
    with TestClient(app) as limited:
        r = limited.post("/predict/number", content=three_digits[0], headers={"Content-Type": "image/png"})
        assert r.status_code == 422
        assert "over the limit of 2 digits" in r.json()["detail"]
        # One mark that splits into three digits: counted again after the split.
        page = compose([mnist_test[0][i] for i in (0, 1, 2)], [-2, -2], np.random.default_rng(0))
        r = limited.post("/predict/number", content=render(page, "paper", np.random.default_rng(0)))
        assert r.status_code == 422
        assert "holds 3 digits, over the limit of 2" in r.json()["detail"]
    assert "over the limit of 2" in r.json()["detail"]


def test_a_corrected_number_is_kept_with_its_digits_for_retraining(fresh_client, db_url, three_digits):
    client, url = fresh_client, db_url
    data, truth, _ = three_digits
    answer = client.post("/predict/number", content=data, headers={"Content-Type": "image/png"}).json()
    assert answer["number"] == truth
    for label in ("123", "124"):  # a second click replaces the first
        r = client.post("/feedback", json={"prediction_id": answer["prediction_id"], "label": label})
        assert r.status_code == 201
        assert r.json()["predicted"] == truth
    store = FeedbackStore(url)
    assert store.stats()["numbers"] == 1
    assert store.stats()["total"] == 0
    assert store.all() == []  # nothing is learned before an operator accepts it
    [pending] = store.listed()
    store.judge(pending.table, pending.id, ACCEPTED)
    digits = store.all()
    assert [label for _, label in digits] == [1, 2, 4]
    assert all(pixels.shape == (28, 28) for pixels, _ in digits)
    assert np.array_equal(
        digits[0][0], np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["digits"][0]["input_image"]))))
    )


def test_a_number_misread_by_its_digit_count_is_kept_but_not_learned(fresh_client, db_url, three_digits):
    client, url = fresh_client, db_url
    answer = client.post("/predict/number", content=three_digits[0], headers={"Content-Type": "image/png"}).json()
    assert client.post("/feedback", json={"prediction_id": answer["prediction_id"], "label": "2026"}).status_code == 201
    assert FeedbackStore(url).stats()["numbers"] == 1
    assert FeedbackStore(url).all() == []


def test_labels_must_fit_the_prediction(fresh_client, three_digits, seven_png):
    client = fresh_client
    number = client.post("/predict/number", content=three_digits[0], headers={"Content-Type": "image/png"}).json()
    digit = client.post("/predict", content=seven_png, headers={"Content-Type": "image/png"}).json()
    cases = [
        (number, 5, "whole number"),
        (number, "12a", "as a string of digits"),
        (digit, "12", "one digit"),
        (digit, 12, "the right digit, 0 to 9"),
    ]
    for answer, label, hint in cases:
        r = client.post("/feedback", json={"prediction_id": answer["prediction_id"], "label": label})
        assert r.status_code == 422, (label, r.text)
        assert hint in json.dumps(r.json()["detail"])
    assert client.post("/feedback", json={"prediction_id": digit["prediction_id"], "label": "1"}).status_code == 201


def test_the_plain_form_corrects_a_number(fresh_client, three_digits):
    client = fresh_client
    page = client.post("/upload", data={"mode": "number"}, files={"file": ("n.png", three_digits[0], "image/png")})
    assert page.status_code == 200
    assert "Wrong? The right number is:" in page.text
    thanks = client.post("/upload/feedback", data={"prediction_id": form_prediction_id(page.text), "label": "321"})
    assert thanks.status_code == 201
    assert "the right number is" in thanks.text
    assert "<strong>321</strong>" in thanks.text


def predictions_counted(client) -> Counter[str]:
    """predictions_total of /predict/number by digit, as /metrics says."""
    found = re.findall(
        r'^predictions_total\{digit="(\d)",endpoint="/predict/number"\} (\S+)$', client.get("/metrics").text, re.M
    )
    return Counter({digit: round(float(n)) for digit, n in found})


def test_every_digit_of_a_number_is_counted_in_the_metrics(client, three_digits):
    """/metrics agrees with the traffic: each digit a number is read as counts, as a digit from /predict does."""
    data, _, _ = three_digits
    before = predictions_counted(client)
    number = client.post("/predict/number", files={"file": ("n.png", data, "image/png")}).json()["number"]
    assert predictions_counted(client) - before == Counter(number)
