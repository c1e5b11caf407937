"""The shipped weights, measured on the official 10,000-image test set."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from predict import DEFAULT_WEIGHTS, Predictor, normalize


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(DEFAULT_WEIGHTS)


@torch.inference_mode()
def native_predictions(predictor: Predictor, images: np.ndarray) -> np.ndarray:
    x = normalize(torch.from_numpy(images).float().div(255))
    return predictor.model(x).argmax(1).numpy()


def test_shipped_weights_reach_99_percent(predictor, mnist_test):
    images, labels = mnist_test
    accuracy = (native_predictions(predictor, images) == labels).mean()
    assert accuracy >= 0.99
    # The figure in the weights' metadata (and so on /model and in the README) is the measured one.
    assert float(predictor.metadata["test_accuracy"]) == pytest.approx(accuracy, abs=1e-4)


def render_as_uploaded(digit: np.ndarray, style: str, rng: np.random.Generator) -> bytes:
    """An MNIST digit as people upload theirs: large, off-centre, dark on light paper or on a transparent canvas."""
    size = int(28 * rng.uniform(4, 10))
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    h, w = int(size * rng.uniform(1.3, 2.0)), int(size * rng.uniform(1.3, 2.2))
    top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    page = np.zeros((h, w), np.float32)
    page[top:top + size, left:left + size] = ink
    buf = io.BytesIO()
    if style == "canvas":
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[..., 3] = np.rint(page * 255)  # black strokes, transparent elsewhere
        Image.fromarray(rgba).save(buf, "PNG")
        return buf.getvalue()
    paper, pen = rng.uniform(190, 250), rng.uniform(10, 70)
    grey = paper + (pen - paper) * page + rng.normal(0, 4, page.shape)
    photo = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))
    if style == "jpeg":
        photo.convert("RGB").save(buf, "JPEG", quality=75)
    else:
        photo.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("style", ["paper", "jpeg", "canvas"])
def test_digits_as_people_upload_them_keep_their_accuracy(predictor, mnist_test, style):
    images, labels = mnist_test
    idx = np.random.default_rng(1).choice(len(images), 1000, replace=False)
    native = (native_predictions(predictor, images[idx]) == labels[idx]).mean()
    rng = np.random.default_rng(2)
    uploaded = np.mean([predictor.predict(render_as_uploaded(images[i], style, rng)).digit == labels[i] for i in idx])
    assert uploaded >= native - 0.01, f"{style}: {uploaded:.2%} as uploaded against {native:.2%} native"
