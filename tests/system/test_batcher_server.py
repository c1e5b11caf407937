"""The real server under uvicorn batches uploads that arrive together, and keeps each answer with its own upload."""

import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from digits.imaging.png import encode
from digits.inference.predictor import Predictor

BOUNDARY = "test-batcher-boundary"


def post(url: str, png: bytes, mode: str = "raw") -> tuple[int, dict]:
    """One POST to /predict on a connection of its own, as separate clients would send it."""
    if mode == "raw":
        body, ctype = png, "image/png"
    else:
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n\r\n'
        body = head.encode() + png + f"\r\n--{BOUNDARY}--\r\n".encode()
        ctype = f"multipart/form-data; boundary={BOUNDARY}"
    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    try:
        conn.request("POST", "/predict", body, {"Content-Type": ctype})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["raw", "multipart"])
def test_concurrent_uploads_each_get_their_own_answer(server, mnist_test, mode):
    """Many uploads at once, so that the server batches them: each answer is the one for its own image,
    the same as the Predictor gives for that image alone."""
    images, _ = mnist_test
    uploads = [encode(images[i]) for i in range(200)]
    predictor = Predictor()
    expected = [predictor.predict(png) for png in uploads]

    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(lambda png: post(server, png, mode), uploads))
    for (status, got), want in zip(responses, expected, strict=True):
        assert status == 200
        assert got["digit"] == want.digit
        assert got["probabilities"] == pytest.approx(want.probabilities, abs=1e-5)


def test_a_bad_upload_among_good_ones_fails_alone(server, seven_png):
    uploads = [seven_png if i % 4 else b"not an image" for i in range(64)]
    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(lambda data: post(server, data), uploads))
    for data, (status, answer) in zip(uploads, responses, strict=True):
        if data == seven_png:
            assert status == 200
            assert answer["digit"] == 7
        else:
            assert status == 400
            assert "not an image we can read" in answer["detail"]
