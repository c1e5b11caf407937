"""The things that are not digits which the MLP learns to doubt: what they are, and what they must never be."""

import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from digits.imaging.fit import FIELD
from digits.training import outliers, report


@pytest.fixture(scope="module")
def pool(mnist_test) -> np.ndarray:
    images, labels = mnist_test
    return outliers.pool(images[:500], labels[:500], 120, seed=0)  # 20 of each kind


def test_the_pool_is_model_input_drawn_by_its_seed(pool, mnist_test):
    assert pool.shape == (120, FIELD, FIELD)
    assert pool.dtype == np.float32
    assert pool.min() >= 0  # what preprocess() gives: ink bright on black, at full strength
    assert pool.max() == 1
    assert all(img.max() == 1 for img in pool)  # no blank input: each has ink
    images, labels = mnist_test
    np.testing.assert_array_equal(pool, outliers.pool(images[:500], labels[:500], 120, seed=0))
    assert not np.array_equal(pool, outliers.pool(images[:500], labels[:500], 120, seed=1))


def test_the_pool_is_the_same_on_any_number_of_cores(pool, mnist_test, monkeypatch):
    images, labels = mnist_test
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0})
    np.testing.assert_array_equal(pool, outliers.pool(images[:500], labels[:500], 120, seed=0))


def test_every_kind_is_in_the_pool_in_equal_shares(pool):
    kinds = len(outliers.KINDS)
    # Drawn in turn: the images of each kind are those at its offset, and each kind's differ from the others'.
    by_kind = [pool[k::kinds] for k in range(kinds)]
    assert {len(k) for k in by_kind} == {120 // kinds}
    ink = [float(k.mean()) for k in by_kind]
    assert len(set(ink)) == kinds, ink


def test_no_yardstick_is_trained_on():
    # The letters that measure rejection are drawn in DejaVu; the outliers' glyphs never are.
    measured = {p.name for p in report.FONTS.glob("*.ttf")}
    assert measured, f"no fonts in {report.FONTS}: `make test` installs fonts-dejavu-core"
    trained = {path.name for path, _ in outliers.fonts()}
    assert trained
    assert not trained & measured
    assert not any(name.startswith("DejaVu") for name in trained)
    # Each font has most of the glyphs, so none is drawn as a missing-glyph box.
    assert all(len(glyphs) >= 30 for _, glyphs in outliers.fonts())
    # No digit, and no letter that is a digit's look-alike, is taught as "not a digit".
    assert not set(outliers.GLYPHS) & set("0123456789OoIlSsZzgqbB|[]()!")


def test_overlaps_join_digits_of_different_classes(mnist_test):
    images, labels = mnist_test
    assert labels[0] != labels[1]
    rng = np.random.default_rng(0)
    for _ in range(5):
        # With only two digits to choose from, of different classes, every overlap holds both of them.
        page = outliers.overlap(rng, images[:2], labels[:2]).resize((28, 28), Image.Resampling.BOX)
        ink = 255 - np.asarray(page, dtype=np.float64)
        assert ink.sum() > 1.2 * max(images[0].sum(), images[1].sum())


def test_touching_pairs_are_one_mark_of_two_digits(mnist_test):
    images, _ = mnist_test
    widths = [int(d.any(0).sum()) for d in images[:2]]
    rng = np.random.default_rng(0)
    for _ in range(10):
        page = outliers.touching(rng, images[:2])
        ink = np.asarray(page) < 128
        _, marks = ndimage.label(ink, structure=np.ones((3, 3)))
        assert marks == 1  # the two digits touch: one mark, which no gap between the digits parts
        # Wider than either digit: two of them, moved together only until they meet.
        cols = np.flatnonzero(ink.any(0))
        assert cols[-1] - cols[0] > 4 * max(widths)
