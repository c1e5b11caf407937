"""The realism benchmark's renderer (redraw.py) draws what it says it draws."""

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from digits.imaging.fit import ink_box
from digits.training import redraw


def test_a_digit_drawn_large_on_the_page_lies_whole_on_the_pad(mnist_test):
    images, _ = mnist_test
    rng = np.random.default_rng(0)
    wide = 0
    for digit in images[:300]:
        skel = redraw.skeleton(digit)
        wide += skel.right - skel.left > 0.8 * skel.height  # those the placement once ran off the pad's sides
        ink = np.asarray(Image.open(io.BytesIO(redraw.on_page(skel, rng, 0.9)))) < 128
        assert not ink[[0, -1]].any()  # the pad's edge clips none of it
        assert not ink[:, [0, -1]].any()
        # Over 90% of the pad, the pen's width more, in its longer side.
        assert max(ink_box(ink).shape) >= 0.9 * redraw.PAD
    assert wide >= 30


def test_a_photo_drawn_anyhow_keeps_its_digit_where_the_tilted_frame_sees_it(mnist_test, monkeypatch):
    images, _ = mnist_test
    drawn: list[np.ndarray] = []
    draw = redraw.draw

    class Drawn(Exception):  # the photo's light, paper, tilt and blur are not asked about: 20 s for 200 digits
        pass

    def kept(*args: Any, **kwargs: Any) -> np.ndarray:
        drawn.append(draw(*args, **kwargs))
        raise Drawn

    monkeypatch.setattr(redraw, "draw", kept)
    rng = np.random.default_rng(0)
    heights = []
    for digit in images[:200]:
        with pytest.raises(Drawn):
            redraw.anyhow(redraw.skeleton(digit), rng)
        ys, xs = np.nonzero(drawn[-1] > 0.5)
        h, w = drawn[-1].shape
        # Each corner of the frame moves in by at most TILT of its sides, so the frame sees all within that margin
        # (to a pixel: the skeleton's points are drawn at whole pixels).
        for along, side in ((ys, h), (xs, w)):
            assert along.min() + 1 >= redraw.TILT * side
            assert along.max() - 1 < (1 - redraw.TILT) * side
        heights.append((ys.max() - ys.min()) / h)
    assert min(heights) < 0.3  # small,
    assert max(heights) > 0.7  # and close up, the pen's width included


def test_the_ink_is_drawn_as_over_the_whole_page(mnist_test):
    # draw() measures distances in the box the pen can reach alone: the ink must be what the distances over the
    # whole page give, a thin pen (drawn at twice the resolution) and a wide one, the digit partly off the page.
    images, _ = mnist_test
    rng = np.random.default_rng(0)
    for digit in images[:40]:
        skel = redraw.skeleton(digit)
        h, w = int(rng.integers(30, 200)), int(rng.integers(30, 200))
        height, pen = rng.uniform(10, 150), rng.choice([rng.uniform(1, 6), rng.uniform(6, 40)])
        centre = (rng.uniform(-0.2, 1.2) * h, rng.uniform(-0.2, 1.2) * w)
        ss = 2 if pen < 6 else 1
        p = (skel.points - [(skel.top + skel.bottom) / 2, (skel.left + skel.right) / 2]) * (height / skel.height)
        q = np.rint((p + centre) * ss).astype(np.int64)
        q = q[(q[:, 0] >= 0) & (q[:, 0] < h * ss) & (q[:, 1] >= 0) & (q[:, 1] < w * ss)]
        grid = np.ones((h * ss, w * ss), dtype=bool)
        grid[q[:, 0], q[:, 1]] = False
        whole = np.clip(pen / 2 + 0.5 - ndimage.distance_transform_edt(grid) / ss, 0, 1).astype(np.float32)
        expected = whole.reshape(h, ss, w, ss).mean(axis=(1, 3)) if len(q) else np.zeros((h, w), np.float32)
        np.testing.assert_array_equal(redraw.draw(skel, (h, w), height, pen, centre), expected)
