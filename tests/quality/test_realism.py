"""Real handwriting: test digits drawn with other pens, on the page's canvas and photographed on paper, read by
the shipped weights (bench/realism.py on fewer digits; docs/model.md's table comes from 500 per condition)."""

import numpy as np
import pytest

from digits.inference.predictor import Predictor
from digits.training import redraw
from tests.helpers import bench_module, chance

DIGITS = 400
Rows = dict[str, dict[str, float]]


@pytest.fixture(scope="module")
def rows(mnist_test) -> Rows:
    images, labels = mnist_test
    pick = np.random.default_rng(0).permutation(len(images))[:DIGITS]
    return bench_module("realism").run(Predictor(), images[pick], labels[pick], seed=0, workers=2)


def holds(row: dict[str, float], accuracy: float, flagged: float, not_a_digit: float) -> None:
    """The row reads at least `accuracy`, flags at most `flagged` and calls at most `not_a_digit` no digit, each
    within chance() on DIGITS digits."""
    assert row["accuracy"] >= accuracy - chance(max(1 - accuracy, 0.01), DIGITS), row
    assert row["flagged"] <= flagged + chance(max(flagged, 0.01), DIGITS), row
    assert row["not_a_digit"] <= not_a_digit + chance(max(not_a_digit, 0.01), DIGITS), row
    assert row["several"] <= 0.01 + chance(0.01, DIGITS), row  # one digit, never taken for several


@pytest.mark.parametrize("pen", [p for p in redraw.PENS if p <= 0.25])
def test_every_pen_reads_as_well_as_mnists_own(rows, pen):
    # Goals: within 0.5 points of MNIST's pen, at most 2% flagged, at most 0.5% "not a digit". The last is missed
    # (0.6% to 1.0% measured on 500 digits), so it is held to 1%.
    holds(rows[f"pen {pen:.2f}"], rows["pen 0.12"]["accuracy"] - 0.005, 0.02, 0.01)


@pytest.mark.parametrize("share", [s for s in redraw.PAD_SHARES if s >= 0.2])
def test_the_pages_own_pen_from_a_fifth_of_the_pad(rows, share):
    holds(rows[f"page {share:.0%}"], rows["pen 0.12"]["accuracy"] - 0.025, 0.025, 0.02)


def test_a_digit_drawn_small_on_the_page(rows):
    # At 15% of the pad the page's pen is half the digit's height: read right 90.2% of the time on 500 digits,
    # against 68.2% before; the goal of within 0.5 points of MNIST's pen is missed.
    holds(rows["page 15%"], 0.88, 0.025, 0.02)


@pytest.mark.parametrize(
    "photo", [f"{light}, {paper}" for light in ("vignette", "gradient") for paper in redraw.PAPERS] + ["shadow, plain"]
)
def test_photos_with_uneven_light_and_ruled_paper(rows, photo):
    holds(rows[photo], rows["pen 0.12"]["accuracy"] - 0.015, 0.04, 0.035)


@pytest.mark.parametrize("photo", ["shadow, lined", "shadow, squared"])
def test_rules_in_a_shadow_are_the_known_weakness(rows, photo):
    # Rules crossing a shadow's edge leave traces (docs/model.md): 86-89% read right, 13-19% flagged, on 500 digits;
    # before this preprocessing, 12%. Held where they are, so that they don't slip further.
    holds(rows[photo], 0.84, 0.22, 0.21)
