"""How well whole numbers read, on numbers composed of MNIST's test digits and drawn as people send them."""

import numpy as np
import pytest

from digits.inference import segment
from digits.inference.predictor import Predictor
from digits.inference.segment import read_number
from digits.training import dataset
from digits.training.report import on_every_core
from tests.helpers import chance, compose, render

# As docs/api.md states them (pytest tests/quality/test_numbers_accuracy.py -s prints them); each bound sits
# chance() from its figure.
APART_EXACT, APART_DIGITS = 0.967, 0.9948  # the lowest of the styles
TOUCHING_EXACT, TOUCHING_DIGITS = 0.813, 0.9707
UNSURE_WRONG, UNSURE_RIGHT = 14 / 31, 14 / 269  # the unsure flag on numbers misread, and on those read right
# A sharp shadow's edge across a number leaves its digits in the shadow lit as little as a dark desk beside a
# sheet: with every mark lit half as much as the one with the most ink dropped as the desk's, 84.0% exact apart.
STYLES = ("paper", "photo", "shadow", "canvas")


def number_set(
    images: np.ndarray, labels: np.ndarray, touching: bool, n: int, seed: int
) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        idx = rng.choice(len(images), int(rng.integers(2, 7)), replace=False)
        gaps = [int(rng.integers(-2, 1) if touching else rng.integers(3, 11)) for _ in idx[1:]]
        out.append((compose(list(images[idx]), gaps, rng), "".join(map(str, labels[idx]))))
    return out


def accuracy(predictor: Predictor, numbers: list[tuple[np.ndarray, str]], style: str) -> tuple[float, float]:
    """The share of numbers read exactly, and of digits read right among numbers split into the right count."""
    exact, right, counted = 0, 0, 0
    for read, (_, truth) in zip(readings(predictor, numbers, style), numbers, strict=True):
        exact += read.number == truth
        if len(read.number) == len(truth):
            right += sum(a == b for a, b in zip(read.number, truth, strict=True))
            counted += len(truth)
    return exact / len(numbers), right / max(counted, 1)


def readings(predictor: Predictor, numbers: list[tuple[np.ndarray, str]], style: str) -> list[segment.Reading]:
    """Each number drawn in turn from one generator, as a person sends it, and read on every core."""
    rng = np.random.default_rng(7)
    return on_every_core(predictor, read_number, (render(page, style, rng) for page, _ in numbers))


@pytest.mark.parametrize("style", STYLES)
def test_numbers_whose_digits_stand_apart(predictor, mnist_test, style):
    images, labels = mnist_test
    exact, per_digit = accuracy(predictor, number_set(images, labels, touching=False, n=150, seed=1), style)
    print(f"apart, {style}: {exact:.1%} exact, {per_digit:.2%} of digits")
    assert exact >= APART_EXACT - chance(APART_EXACT, 150)
    assert per_digit >= APART_DIGITS - chance(APART_DIGITS, 4 * 150)  # about four digits a number


@pytest.mark.parametrize("style", STYLES)
def test_numbers_whose_digits_touch(predictor, mnist_test, style):
    images, labels = mnist_test
    exact, per_digit = accuracy(predictor, number_set(images, labels, touching=True, n=150, seed=2), style)
    print(f"touching, {style}: {exact:.1%} exact, {per_digit:.2%} of digits")
    assert exact >= TOUCHING_EXACT - chance(TOUCHING_EXACT, 150)  # short of the goal of 88%: see docs/api.md
    assert per_digit >= TOUCHING_DIGITS - chance(TOUCHING_DIGITS, 4 * 150)


def test_a_misread_number_often_says_it_is_unsure(predictor, mnist_test):
    images, labels = mnist_test
    numbers = [n for touching, seed in ((False, 1), (True, 2)) for n in number_set(images, labels, touching, 150, seed)]
    wrong: list[segment.Reading] = []
    right: list[segment.Reading] = []
    for r, (_, truth) in zip(readings(predictor, numbers, "paper"), numbers, strict=True):
        (right if r.number == truth else wrong).append(r)
    # The margin that makes a count of digits doubtful was chosen on numbers of training digits, where it flags 44
    # of 97 misread and 59 of 903 read right (1,000 on paper, half of them touching).
    flagged_wrong = sum(r.uncertain for r in wrong) / len(wrong)
    flagged_right = sum(r.uncertain for r in right) / len(right)
    print(f"unsure: {flagged_wrong:.0%} of {len(wrong)} misread, {flagged_right:.1%} of {len(right)} read right")
    assert flagged_wrong >= UNSURE_WRONG - chance(UNSURE_WRONG, 31)
    assert flagged_right <= UNSURE_RIGHT + chance(UNSURE_RIGHT, 269)
    assert any(r.split_doubtful for r in wrong)  # where the digits were told apart counts too


def test_a_piece_called_not_a_digit_counts_against_its_reading(predictor, monkeypatch):
    # On the training digits that NOT_ONE was chosen on: touching numbers that a piece called "not a digit"
    # misled, a 1 swallowed by its neighbour or a spurious extra digit, read right once it pays for that.
    images, labels = (t.numpy() for t in dataset.load(train=True))
    numbers = number_set(images, labels, touching=True, n=300, seed=11)
    shipped, exact = segment.NOT_ONE, {}
    for charge in (0.0, shipped):
        monkeypatch.setattr(segment, "NOT_ONE", charge)
        exact[charge] = accuracy(predictor, numbers, "paper")[0]
    print(f"touching numbers of training digits read exactly, by NOT_ONE: {exact}")
    assert exact[shipped] > exact[0.0]
