"""The realism benchmark's renderer (redraw.py) draws what it says it draws."""

import io

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
