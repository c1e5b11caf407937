"""Two decisions, two scores: "uncertain" from the calibrated confidence, "not a digit" from the energy."""

import numpy as np
import torch

from digits.inference.predictor import Predictor
from digits.training.calibration import energy, flagged


def with_thresholds(predictor: Predictor, uncertain_below: float, not_a_digit_below: float) -> Predictor:
    below = {"uncertain_below": str(uncertain_below), "not_a_digit_below": str(not_a_digit_below)}
    return Predictor.from_state(predictor.state, predictor.metadata | below)


def test_not_a_digit_is_the_energy_under_its_threshold_whatever_the_confidence(predictor, mnist_test):
    images = np.concatenate(
        [mnist_test[0][:300].astype(np.float32) / 255, np.random.default_rng(0).random((100, 28, 28), np.float32) ** 4]
    )
    logits = torch.from_numpy(predictor.forward(images))
    scores = energy(logits, predictor.temperature).numpy()
    middle = float(np.median(scores))
    # No confidence is under 0: what is uncertain is what the energy calls no digit, and nothing else.
    answers = with_thresholds(predictor, 0.0, middle).classify(images)
    said = np.array([a.not_a_digit for a in answers])
    np.testing.assert_array_equal(said, scores < middle)
    assert [a.uncertain for a in answers] == said.tolist()
    # Training measures what the service answers.
    np.testing.assert_array_equal(flagged(logits, predictor.temperature, (0.0, middle)).numpy(), said)


def test_a_doubt_between_digits_is_uncertain_but_a_digit(predictor, mnist_test):
    images = mnist_test[0][:300].astype(np.float32) / 255
    answers = with_thresholds(predictor, 1.01, -np.inf).classify(images)
    assert all(a.uncertain and not a.not_a_digit and a.hint is None for a in answers)


def test_the_shipped_threshold_rarely_calls_a_digit_no_digit(predictor, mnist_test):
    digits = predictor.classify(mnist_test[0][:1000].astype(np.float32) / 255)
    assert 0 < sum(a.not_a_digit for a in digits) <= 10  # 0.5% of validation digits fall under it, by its choice
