"""Confidence that means what it says, and things that are not digits, measured on the shipped weights."""

import json

import numpy as np
import pytest
import torch

from digits.inference.predictor import Predictor
from digits.inference.weights import DEFAULT_WEIGHTS
from digits.training import report
from digits.training.calibration import expected_calibration_error
from tests.helpers import chance


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(DEFAULT_WEIGHTS)


@pytest.fixture(scope="module")
def test_probs(predictor, mnist_test) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = mnist_test
    predictions = predictor.classify(images.astype(np.float32) / 255)
    return torch.tensor([p.probabilities for p in predictions]), torch.from_numpy(labels)


def test_the_temperature_fitted_on_validation_calibrates_the_test_set(predictor, test_probs):
    assert predictor.temperature != 1.0
    probs, labels = test_probs
    assert expected_calibration_error(probs, labels) < 0.005
    # Fitted on validation, the temperature needn't help on test: the shipped one (T = 1.1204) leaves it at 0.26%.
    assert float(predictor.metadata["ece_after"]) < 0.005


def test_few_real_digits_are_flagged_uncertain(predictor, test_probs):
    # The threshold flags 0.75% of validation digits, MNIST's and those drawn as uploads together; the uploads
    # take most of that share, and MNIST's own test digits come out near 0.5%.
    probs, _ = test_probs
    flagged = float((probs.max(1).values < predictor.uncertain_below).float().mean())
    assert 0.001 <= flagged <= 0.02


MISTAKES, RIGHT = 73, 9927  # the shipped weights' answers on the 10,000 test digits (99.27%)
CAUGHT, FALSE_ALARMS = 23 / MISTAKES, 31 / RIGHT


def test_uncertain_digits_are_the_doubtful_ones(predictor, test_probs):
    probs, labels = test_probs
    unsure = probs.max(1).values < predictor.uncertain_below
    wrong = probs.argmax(1) != labels
    # Measured: 23 of the 73 mistakes are flagged, 31.5%, against 31 of the 9,927 right answers, 0.31%. Each share
    # is held within chance() of its figure.
    caught = float(unsure[wrong].float().mean())
    false_alarms = float(unsure[~wrong].float().mean())
    print(f"flagged: {caught:.1%} of {int(wrong.sum())} mistakes, {false_alarms:.2%} of the right answers")
    assert caught >= CAUGHT - chance(CAUGHT, MISTAKES)
    assert false_alarms <= FALSE_ALARMS + chance(FALSE_ALARMS, RIGHT)


@pytest.fixture(scope="module")
def rejection(predictor, mnist_test, fashion_mnist) -> dict:
    # fashion_mnist: report.score_sets() reads it from disk too, and would quietly leave it out if missing.
    images, _ = mnist_test
    rng = np.random.default_rng(0)
    return report.rejection(report.score_sets(predictor, images[rng.choice(len(images), 2000, replace=False)], rng))


@pytest.mark.parametrize(
    ("name", "min_flagged", "min_auroc"),
    [
        # Measured 92.45% and 76.9%, each over its goal (92% and 75%) since the energy decides "not a digit"
        # (docs/model.md, "Two decisions, two scores"); held within chance() of what they are.
        ("Fashion-MNIST", 0.9245 - chance(0.9245, 2000), 0.98),
        ("letters", 0.769 - chance(0.769, 480), 0.95),
        ("noise", 0.99, 0.99),
        ("blank", 1.0, 0.99),
    ],
)
def test_things_that_are_not_digits_are_told_apart(rejection, name, min_flagged, min_auroc):
    result = rejection[name]
    assert result["flagged"] >= min_flagged, json.dumps(result)
    assert result["auroc"] >= min_auroc, json.dumps(result)
    # Flagged, they are told "this doesn't look like a digit", not "not sure which digit".
    assert result["not_a_digit"] >= 0.9 * result["flagged"], json.dumps(result)


def test_real_digits_sent_as_uploads_are_rarely_flagged_and_almost_never_called_no_digit(rejection):
    digits = rejection["MNIST test digits"]
    assert digits["flagged"] <= 0.01, json.dumps(digits)
    assert digits["not_a_digit"] <= 0.005, json.dumps(digits)


def test_model_endpoint_reports_the_recipe_and_headline_numbers(client):
    meta = client.get("/model").json()["metadata"]
    recipe = meta["recipe"]
    assert recipe["teacher_epochs"] > 0
    assert recipe["epochs"] > 0
    thresholds = ("uncertain_below", "not_a_digit_below")  # both, as docs/api.md says /model shows them
    for key in ("temperature", *thresholds, "ece_before", "ece_after", "teacher_test_accuracy"):
        assert meta[key] > 0
    assert "Fashion-MNIST" in meta["rejection"]
    assert set(meta["uploaded_accuracy"]) == {"paper", "jpeg", "canvas"}
