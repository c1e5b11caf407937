"""The shipped weights, measured on the official 10,000-image test set."""

import numpy as np
import pytest
import torch

from digits.inference.predictor import Predictor
from digits.inference.weights import DEFAULT_WEIGHTS
from digits.training.report import uploaded_accuracy
from digits.training.splits import normalize
from model import model_from_state


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(DEFAULT_WEIGHTS)


@torch.inference_mode()
def native_predictions(predictor: Predictor, images: np.ndarray) -> np.ndarray:
    x = normalize(torch.from_numpy(images).float().div(255))
    return model_from_state(predictor.state)(x).argmax(1).numpy()


def test_shipped_weights_reach_99_percent(predictor, mnist_test):
    images, labels = mnist_test
    accuracy = (native_predictions(predictor, images) == labels).mean()
    assert accuracy >= 0.99
    # The figure in the weights' metadata (and so on /model and in the README) is the measured one.
    assert float(predictor.metadata["test_accuracy"]) == pytest.approx(accuracy, abs=1e-4)


UPLOADED = 1000  # test digits, each drawn in every style


@pytest.fixture(scope="module")
def uploaded(predictor, mnist_test) -> tuple[dict[str, float], float]:
    """The accuracy on UPLOADED test digits drawn as uploads, by style, and on the same digits as MNIST has them."""
    images, labels = mnist_test
    idx = np.random.default_rng(1).choice(len(images), UPLOADED, replace=False)
    native = float((native_predictions(predictor, images[idx]) == labels[idx]).mean())
    return uploaded_accuracy(predictor, images[idx], labels[idx]), native


@pytest.mark.parametrize("style", ["paper", "jpeg", "canvas"])
def test_digits_as_people_upload_them_keep_their_accuracy(uploaded, style):
    by_style, native = uploaded
    assert by_style[style] >= native - 0.01, f"{style}: {by_style[style]:.2%} as uploaded against {native:.2%} native"
