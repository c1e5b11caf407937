"""'Why this digit?': the explanation picture (explain.py), and ?explain=true on the API."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from digits.imaging.png import encode
from digits.inference import explain
from digits.inference.predictor import Predictor
from digits.training.splits import normalize
from model import model_from_state


def rgb(b64: str) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert (image.mode, image.size) == ("RGB", (28, 28))
    return np.asarray(image).astype(int)


def warm(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., 0] > pixels[..., 2] + 40) & (pixels[..., 0] > 100)


def cool(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., 2] > pixels[..., 0] + 40) & (pixels[..., 2] > 100)


@torch.inference_mode()
def log_odds(predictor: Predictor, images: np.ndarray, digit: int) -> np.ndarray:
    logits = model_from_state(predictor.state)(normalize(torch.from_numpy(images.astype(np.float32))))
    others = torch.cat([logits[:, :digit], logits[:, digit + 1 :]], dim=1)
    return (logits[:, digit] - torch.logsumexp(others, dim=1)).numpy()


def test_the_most_credited_patch_matters_more_than_any_other(predictor, mnist_test):
    """The credits are what they claim: blanking the warmest patch lowers the answer's log-odds more than blanking
    any other patch of ink does, and by exactly its credit."""
    images, _ = mnist_test
    for image in images[:20].astype(np.float32) / 255:
        digit = predictor.classify(image[None])[0].digit
        credit = explain.credits(predictor.forward, image[None], [digit], [None])[0]
        assert (credit[image == 0] == 0).all()  # blank paper gets no credit
        patches = [(y, x) for y in range(0, 28, 4) for x in range(0, 28, 4) if image[y : y + 4, x : x + 4].any()]
        blanked = np.repeat(image[None], len(patches), axis=0)
        for i, (y, x) in enumerate(patches):
            blanked[i, y : y + 4, x : x + 4] = 0
        drops = log_odds(predictor, image[None], digit)[0] - log_odds(predictor, blanked, digit)
        best = int(np.argmax(drops))
        y, x = patches[best]
        assert credit[y : y + 4, x : x + 4].max() == pytest.approx(credit.max(), rel=1e-4)
        assert credit.max() == pytest.approx(drops[best], rel=1e-3, abs=1e-4)


def test_a_confident_digit_is_mostly_warm(predictor, mnist_test):
    images, _ = mnist_test
    confident = [p for p in predictor.classify(images[:50].astype(np.float32) / 255) if not p.uncertain]
    assert len(confident) > 45
    warm_share = []
    for e, p in zip(explain.explain(predictor.forward, confident), confident, strict=True):
        assert (e.towards, e.against) == (p.digit, None)
        pixels = np.asarray(Image.open(io.BytesIO(e.png))).astype(int)
        warm_share.append(warm(pixels).sum() / max(1, (warm(pixels) | cool(pixels)).sum()))
    assert np.median(warm_share) > 0.8


def test_an_uncertain_answer_is_explained_against_the_runner_up(predictor, mnist_test):
    """A 4 and a 9 overlaid: what sets the answer apart from the second likeliest digit, not from all the others."""
    images, labels = mnist_test
    four, nine = (images[list(labels).index(d)].astype(np.float32) / 255 for d in (4, 9))
    blend = np.maximum(four, nine)
    p = predictor.classify(blend[None])[0]
    p.uncertain, p.not_a_digit = True, False  # whatever the threshold, this is how an uncertain answer is explained
    (e,) = explain.explain(predictor.forward, [p])
    assert e.against == explain.runner_up(p.probabilities)
    assert e.against != e.towards


def test_predict_explains_only_when_asked(client, seven_png):
    plain = client.post("/predict", files={"file": ("7.png", seven_png, "image/png")}).json()
    assert plain["explanation"] is None
    asked = client.post("/predict?explain=true", files={"file": ("7.png", seven_png, "image/png")}).json()
    assert {k: v for k, v in asked.items() if k not in ("explanation", "prediction_id")} == {
        k: v for k, v in plain.items() if k not in ("explanation", "prediction_id")
    }
    pixels = rgb(asked["explanation"])
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(asked["input_image"]))))
    assert not (warm(pixels) & (seen == 0)).any()  # colour only where there is ink
    assert warm(pixels).sum() > cool(pixels).sum()


def test_a_number_explains_each_digit(client, mnist_test):
    images, labels = mnist_test
    strip = 255 - np.kron(np.concatenate([images[0], images[1], images[2]], axis=1), np.ones((4, 4), np.uint8))
    r = client.post("/predict/number?explain=true", files={"file": ("n.png", encode(strip), "image/png")})
    assert r.status_code == 200
    digits = r.json()["digits"]
    assert [d["digit"] for d in digits] == list(labels[:3])
    for d in digits:
        assert warm(rgb(d["explanation"])).any()


def test_a_batch_explains_each_good_file(client, seven_png):
    files = [("files", ("7.png", seven_png, "image/png")), ("files", ("x.png", b"not an image", "image/png"))]
    answers = client.post("/predict/batch?explain=true", files=files).json()["predictions"]
    assert warm(rgb(answers[0]["explanation"])).any()
    assert "error" in answers[1]


def test_a_large_batch_is_explained_a_chunk_at_a_time_with_the_same_pictures(predictor, mnist_test):
    images, _ = mnist_test
    predictions = predictor.classify(images[: explain.CHUNK * 2 + 3].astype(np.float32) / 255)
    together = explain.explain(predictor.forward, predictions)
    alone = [explain.explain(predictor.forward, [p])[0] for p in predictions]
    for a, b in zip(together, alone, strict=True):
        pixels = [np.asarray(Image.open(io.BytesIO(e.png))).astype(int) for e in (a, b)]
        assert np.abs(pixels[0] - pixels[1]).max() <= 1  # a pass's batch size may move a float's last bit
