"""The preprocessing's shortcuts, each against the long way round it skips: the same pixels to the last bit, over
MNIST's test set and the realism benchmark's conditions."""

import numpy as np
from PIL import Image

from digits.imaging.decode import decode
from digits.imaging.fit import ink_box, one_pen
from digits.imaging.ink import INK_PIXELS, _extremes, _gray_and_alpha, _surroundings, ink_map
from digits.imaging.png import encode
from tests.helpers import realism_uploads


def test_a_crop_already_boxed_is_what_pillows_resize_returns(mnist_test):
    """fit_and_centre() skips the resize of a crop whose longer side is already 20 px, as MNIST's own are."""
    boxed = 0
    for digit in mnist_test[0]:
        x = ink_map(Image.fromarray(255 - digit))
        crop = one_pen(ink_box(x))
        if max(crop.shape) == 20:
            boxed += 1
            resized = np.asarray(Image.fromarray(crop).resize(crop.shape[::-1], Image.Resampling.BILINEAR))
            assert resized.tobytes() == crop.tobytes()
    assert boxed > 9_000  # the shortcut is the usual way for MNIST-style uploads


def test_the_extremes_are_what_partition_finds(mnist_test):
    """_ink() takes the 16th darkest and lightest pixels without sorting when they repeat, as a drawing's do."""
    grays = [_gray_and_alpha(decode(u))[0] for u in realism_uploads(mnist_test)]
    drawing = np.full((512, 512), 1.0, np.float32)
    drawing[100:400, 240:272] = 0
    shortcut = 0
    for gray in [*grays, drawing, 1 - drawing, np.float32(1) - mnist_test[0][0] / np.float32(255)]:
        k, n = INK_PIXELS, gray.size
        found = np.partition(gray.ravel(), (k, n - 1 - k))
        assert _extremes(gray, k) == (found[k], found[n - 1 - k])
        shortcut += (gray == gray.min()).sum() > k and (gray == gray.max()).sum() > k
    assert shortcut >= 2


def test_flat_paper_is_what_smoothing_would_give():
    """_paper() skips smoothing paper that is one level all over: Pillow's bilinear resize keeps a constant."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        level = np.float32(rng.random())
        blocks, size = rng.integers(3, 17, 2), rng.integers(40, 520, 2)
        flat = Image.fromarray(np.full(blocks, level, np.float32))
        assert (np.asarray(flat.resize(tuple(size), Image.Resampling.BILINEAR)) == level).all()


def test_the_surroundings_of_a_box_are_the_whole_images_cut_to_it():
    """_surroundings() reads only what lies within reach of the box it is asked for, the frame's edge included."""
    rng = np.random.default_rng(2)
    for _ in range(300):
        x = rng.random(rng.integers(20, 120, 2)).astype(np.float32)
        reach = int(rng.integers(2, 40))
        (top, bottom), (left, right) = (np.sort(rng.choice(n + 1, 2, replace=False)) for n in x.shape)
        box = np.s_[top:bottom, left:right]
        assert _surroundings(x, reach, box).tobytes() == _surroundings(x, reach)[box].tobytes()


def test_an_opaque_canvas_reads_as_its_gray_does():
    """decode() reads an opaque RGBA upload as L, before reducing it; alpha over 0.99 was always ignored."""
    rng = np.random.default_rng(1)
    # Noisy paper with a noisy bar of ink: noise alone is no digit (ink.py), and there would be no ink to compare.
    gray = rng.integers(150, 256, (600, 560), dtype=np.uint8)
    gray[150:450, 250:310] = rng.integers(0, 60, (300, 60))
    for alpha in (255, 253):
        rgba = np.dstack([gray, gray, gray, np.full_like(gray, alpha)])
        assert (ink_map(decode(encode(rgba))) == ink_map(decode(encode(gray)))).all()
