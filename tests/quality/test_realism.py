"""Real handwriting: test digits drawn with other pens, on the page's canvas and photographed on paper, read by
the shipped weights (bench/realism.py on fewer digits; docs/model.md's table comes from 500 per condition)."""

import numpy as np
import pytest

from digits.inference.predictor import Predictor
from digits.training import redraw
from tests.helpers import bench_module, chance

DIGITS = 200  # 40 conditions: 122 s of CI on 2 cores (38 took 379 s at 400)
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
    # (0.6% to 1.2% measured on 500 digits), so it is held to 1%.
    holds(rows[f"pen {pen:.2f}"], rows["pen 0.12"]["accuracy"] - 0.005, 0.02, 0.01)


@pytest.mark.parametrize("share", redraw.PAD_SHARES)
def test_the_pages_own_pen_at_any_size(rows, share):
    # Read right 95.4-97.8% on 500 digits, flagged 1.0-3.0%, "not a digit" 1.0-2.4%: the digits drawn over 75%
    # and 90% of the pad, with the pen at its most, doubt the most.
    holds(rows[f"page {share:.0%}"], rows["pen 0.12"]["accuracy"] - 0.025, 0.04, 0.03)


@pytest.mark.parametrize("share", [s for s in redraw.PAD_SHARES if s <= 0.35])
def test_a_digit_drawn_small_on_the_page_reads_as_mnists_own_pen(rows, share):
    # The pen follows the drawing's size (static/app.js): at 10% of the pad a fixed 40 px pen read 65.8% on 500
    # digits, 23.2% flagged, and 15% read 90.2%; with the pen 0.12 of the drawing, 97.2-97.8%, 1.0-1.2% flagged,
    # 1.0-1.2% "not a digit", as MNIST's own pen (97.0%, 0.8%, 0.8%).
    holds(rows[f"page {share:.0%}"], rows["pen 0.12"]["accuracy"] - 0.005, 0.02, 0.015)


PHOTOS = [name for name, (group, _) in redraw.conditions().items() if group == "photo"]


@pytest.mark.parametrize(
    "photo", [f"{light}, {paper}" for light in redraw.LIGHTS for paper in redraw.PAPERS if paper != "on a desk"]
)
def test_photos_with_uneven_light_and_ruled_paper(rows, photo):
    # Shadows soft and hard, rules crossing their edges and a dim room included: 97.2-98.0% read right on 500
    # digits, where rules in a soft shadow read 86-89%, a hard shadow 25-27% and a dim room 52-69% while the
    # paper's level was taken at a coarse scale alone.
    holds(rows[photo], rows["pen 0.12"]["accuracy"] - 0.015, 0.025, 0.015)


def test_a_photo_drawn_anyhow(rows):
    # Any light and paper, a desk included, ink and paper colour, tilt, blur, JPEG quality, the digit small or close
    # up in any pen: 97.0% read right on 500 digits, 2.2% flagged, 1.4% "not a digit", 0.0% "several digits" (96.8%
    # and 2.4% flagged while strokes that crossed a rule lost their pixels on it with the rule's, 96.4%, 3.0% and
    # 1.8% while a rule alone had to cross 0.6 of the frame, not 0.4).
    # Drawn as the other photos, on plain, lined or squared paper: 98.0%, 1.8% flagged, 0.8% "not a digit", 0.8%
    # "several digits" (1.4% while a piece of a digit was judged beside the median mark's height); 96.8% and 4.2%
    # flagged while specks astray were ink, 96.0% and 5.8% flagged while a rule had to have two others, 92.4%,
    # 11.0%, 9.2% and 1.6% while rules were searched only where they crossed 80% of the frame at ±6°, and 75.0%,
    # 34.4%, 33.6% and 0.6% while all of a page's rules had to share one slope. Held where it is, so that it
    # doesn't slip back.
    row = rows["photo, anyhow"]
    assert row["accuracy"] >= 0.968 - chance(0.032, DIGITS), row
    assert row["flagged"] <= 0.026 + chance(0.026, DIGITS), row
    assert row["several"] <= 0.008 + chance(0.008, DIGITS), row


@pytest.mark.parametrize(
    ("scene", "right", "answer", "rate"),
    [
        # Three holes along the sheet's edge, the desk dark through them: 97.5% read right on these 200 digits,
        # none "several digits" (98.0% and 0.2% on 500); 41.5% and 55.5% "several digits" of training digits
        # while a dot was as much ink as a stroke.
        ("holes", 0.98, "several", 0.01),
        # A box printed 1-3 px wide around the digit: 95.0% read right, 2.0% "not a digit"; 94.5% and 2.5% while a
        # line under the digit was a stroke, 94.0% and 3.0% while a loop round it was, and 82.0% and 21.0% while a
        # line far finer than the pen was too.
        ("box", 0.95, "not_a_digit", 0.02),
        # A ring drawn by hand round the digit, in its pen: 91.0% read right, 4.5% "not a digit", most of the rest
        # rings that the frame cuts in two (docs/model.md); 82.0% and 13.5% while a gap in the loop left it open,
        # 66.0% and 30.5% while the frame's edge closed no loop, and 8.5% and 69.5% while a loop round the digit was
        # a stroke. Held where it is, so it doesn't slip back.
        ("circle", 0.91, "not_a_digit", 0.045),
        # A line drawn by hand under the digit, in its pen: 92.5% read right, 4.5% "not a digit"; 55.5% and 28.5%
        # while it was taken for a stroke of the digit.
        ("underline", 0.925, "not_a_digit", 0.045),
        # A pen lying on the sheet, running off the frame: 85.0% read right, 9.0% "not a digit", 1.5% "several
        # digits"; 85.5% while no piece of a surface was cut off (one photo keeps a piece of the pen that the cut
        # left short of the frame; another, the pen now gone, is a 7 read as the 2 it looks like), 82.5%, 10.5% and
        # 2.5% while a digit's strength was the strongest mark's, a pen darker than its ink included, 76.0%, 16.0%
        # and 3.5% while a mark that the frame cut was ink where softer than the digit, and 43.5%, 34.0% and 12.5%
        # in a wider pen too. What is left: a pen as strong and as thin as the digit's, and one whose end near the
        # frame the paper's level took in (docs/model.md). Held where it is, so that it doesn't slip back.
        ("pen", 0.85, "several", 0.015),
        # A fingertip in from the frame's edge, short of the digit: 97.0% read right, none "several digits"; 95.5%
        # and 1.0% while its outline, which the paper's level left, was ink.
        ("finger", 0.97, "several", 0.005),
        # A coloured note on a desk lighter than it: 96.0% read right, 2.0% "not a digit"; 93.0% and 6.5% while the
        # note's corners, which the paper's level cut off it, were ink, and 90.0% and 9.0% while a strip of the desk
        # that the frame cut was taken for chalk, and the note for a board. Held where it is.
        ("note", 0.96, "not_a_digit", 0.02),
    ],
)
def test_a_scene_beside_the_digit(mnist_test, scene, right, answer, rate):
    # 200 test digits in bench/held_out.py's photos of a scene that nothing else draws.
    images, labels = mnist_test
    pick = np.random.default_rng(0).permutation(len(images))[:DIGITS]
    rates = bench_module("held_out").rates(Predictor(), images[pick], labels[pick], scene, seed=0)
    assert rates["accuracy"] >= right - chance(1 - right, DIGITS), rates
    assert rates[answer] <= rate + chance(rate, DIGITS), rates


@pytest.mark.parametrize(
    ("scene", "right", "not_a_digit"),
    [
        # The sheet's punched holes, the desk dark through them: 95.5% read right on these 200 digits, 2.5% "not a
        # digit"; 89.5% and 10.0% while a digit with less ink than the holes was not looked at again, and 61.5% and
        # 40.5% while the pencil's grey was judged beside the holes, and they kept as the digit.
        ("holes", 0.955, 0.025),
        # A box printed round the digit, darker than the graphite: 88.5% and 8.5%; 87.5% while the box was kept as
        # all the ink there was, and the digit judged shading inside it; 62.5% and 25.5% before.
        ("box", 0.885, 0.085),
        # A ring drawn round the digit in a darker pen: 92.5% and 4.0%; 87.0% while the ring was kept as all the ink
        # there was, and the digit judged shading inside it: a 0.
        ("circle", 0.925, 0.04),
        # A crumpled sheet, its facets lit each their own way: 90.0% and 6.0%; 87.0% and 9.5% before.
        ("crumpled", 0.90, 0.06),
        # A pen lying on the sheet, darker than the graphite: 81.5% and 19.0%; 66.0% and 38.5% while the second
        # look was not taken where all the first kept ran off the frame, 63.5% and 41.0% while a piece of a surface
        # that the paper's level cut off was ink, 52.5% and 47.5% while the digit was judged beside the pen's
        # strength, not the strongest mark the person framed. A fingertip: 95.5% and 2.0%; 89.0% and 10.0% without
        # that second look, 76.0% and 23.5% before.
        ("pen", 0.815, 0.19),
        ("finger", 0.955, 0.02),
        # A note on a lighter desk: 56.5% and 40.5% (2.5% "several digits"); 49.5%, 40.5% and 8.5% while its corners
        # were ink. Held where it is.
        ("note", 0.56, 0.41),
        # A notebook's margin, darker than the graphite, the rules across both: 90.0% and 10.0% (0.5% "several
        # digits"; 9.5% "not a digit" without the second look where all the first kept ran off the frame); 89.5%,
        # 8.5% and 3.0% while strokes that crossed a rule lost their pixels on it with the rule's; 88.5% while a
        # margin as wide as the graphite, kept by the first look, was kept beside the digit by the second; 85.0% and
        # 10.5% while the margin, running across the frame in a finer pen than the digit's, was kept beside it, and
        # 80.0% and 14.5% while the second look took its unit from the marks before the rules were taken off.
        ("margin", 0.90, 0.10),
        # Dot-grid paper, its dots as dark as the graphite: 95.0% and 3.5%; 86.5% and 14.5% while the dots inside the
        # digit's box were kept as its own.
        ("dots", 0.95, 0.035),
        # A line drawn under the digit in its pencil: 92.5% and 2.5%; 87.0% and 7.0% while a line drawn at a slant or
        # bowed was a stroke of the digit.
        ("underline", 0.925, 0.025),
    ],
)
def test_a_digit_in_pencil_beside_a_scene(mnist_test, scene, right, not_a_digit):
    # 200 test digits in bench/held_out.py's photos of a scene, each digit in pencil: softer than what lies beside
    # it, and read in its own units (docs/model.md, "A digit in pencil").
    images, labels = mnist_test
    pick = np.random.default_rng(0).permutation(len(images))[:DIGITS]
    rates = bench_module("held_out").rates(Predictor(), images[pick], labels[pick], scene, seed=0, pencil=True)
    assert rates["accuracy"] >= right - chance(1 - right, DIGITS), rates
    assert rates["not_a_digit"] <= not_a_digit + chance(not_a_digit, DIGITS), rates


@pytest.mark.parametrize("scan", [name for name, (group, _) in redraw.conditions().items() if group == "scan"])
def test_a_digit_scanned_small_and_blown_up(rows, scan):
    # Captured 8-16 px tall and blown up 3-8×: 97.6-97.8% read right on 500 digits, 1.4-1.6% flagged.
    holds(rows[scan], rows["pen 0.12"]["accuracy"] - 0.015, 0.025, 0.015)


@pytest.mark.parametrize("photo", [name for name in PHOTOS if name.endswith("on a desk")])
def test_a_sheet_on_a_desk_is_the_known_weakness(rows, photo):
    # Where a hard shadow's edge meets the sheet's, what is left of the desk is still found as ink now and then
    # (docs/model.md): 96.8-97.8% read right on 500 digits, 0.2-0.6% "several digits", under a hard shadow the
    # least (96.6% while a rule alone had to cross 0.6 of the frame, 96.4% and 0.8% while the desk's grain that the
    # frame cut was ink where the gain was at its cap); the dim desk 96.2% and 1.6% while pinholes passed for ink;
    # 93.0-97.4% while the desk in the shadow between the sheet and the lit desk passed for a stroke (the hard
    # shadow 93.0%, 2.8% "several digits"),
    # 92.6-97.4% while specks astray were ink (the dim desk 92.6%), 90.6-97.2% while the light's share was taken
    # up to 4 times rather than 3, 84.2-96.4% while its specks were kept, 79.4-93.6% while every mark soft beside
    # the digit was, 69.6-79.2% while rules had to cross 80% of the frame at ±6°, 62.8-76.2% while the frame's
    # median set the polarity, and 18-47% before that. Held where it is, so that it doesn't slip back.
    row = rows[photo]
    assert row["accuracy"] >= 0.968 - chance(0.032, DIGITS), row
    assert row["several"] <= 0.008 + chance(0.008, DIGITS), row
