"""The realism benchmark's renderer (redraw.py) draws what it says it draws."""

import io
from typing import Any

import numpy as np
from PIL import Image

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

    def kept(*args: Any, **kwargs: Any) -> np.ndarray:
        drawn.append(draw(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(redraw, "draw", kept)
    rng = np.random.default_rng(0)
    heights = []
    for digit in images[:200]:
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
