"""An upload already in MNIST's form is read as it is; any other is fitted (fit.in_mnist_form, fit.prepared and
fit.prepared_upload)."""

import numpy as np
import pytest
from PIL import Image

from digits.imaging import fit
from digits.imaging.decode import Opened, decode, load, open_image
from digits.imaging.fit import fit_and_centre, in_mnist_form, prepared, prepared_upload
from digits.imaging.ink import ink_map
from digits.imaging.png import encode
from tests.helpers import realism_uploads


def test_every_mnist_test_digit_is_read_as_it_is(mnist_test, monkeypatch):
    """Each of the 10,000, light on dark as MNIST stores it and dark on light as people save it, reaches the
    network as MNIST has it, its strongest ink 1: from libspng's pixels as uploaded, and from Pillow's image."""
    loaded = []

    def loading(opened: Opened) -> Image.Image:
        loaded.append(opened)
        return load(opened)

    monkeypatch.setattr(fit, "load", loading)
    for digit in mnist_test[0]:
        expected = digit.astype(np.float32) / np.float32(digit.max())
        for pixels in (digit, 255 - digit):
            data = encode(pixels)
            for x, ink in (prepared_upload(open_image(data)[0]), prepared(decode(data))):
                assert x.tobytes() == expected.tobytes()
                assert ink is x  # several_digits() judges the same ink
    assert not loaded  # no Pillow image was made of an upload in MNIST's form


def shrunk(digit: np.ndarray) -> np.ndarray:
    small = np.asarray(Image.fromarray(digit[4:24, 4:24]).resize((12, 12), Image.Resampling.BOX))
    out = np.zeros_like(digit)
    out[8:20, 8:20] = small
    return out


def on_grey(digit: np.ndarray) -> np.ndarray:
    return np.rint(230 - digit * (200 / 255)).astype(np.uint8)


@pytest.mark.parametrize(
    "made",
    [
        pytest.param(shrunk, id="drawn smaller than the box"),
        pytest.param(lambda d: np.roll(d, 3, axis=1), id="off centre"),
        pytest.param(on_grey, id="grey paper"),
        pytest.param(lambda d: (d * (150 / 255)).astype(np.uint8), id="faint ink"),
        pytest.param(lambda d: np.asarray(Image.fromarray(d).resize((56, 56))), id="twice the size"),
    ],
)
def test_an_upload_in_any_other_form_is_fitted(mnist_test, made):
    """One step from MNIST's form, an upload takes the whole preprocessing, whose fit brings it to that form."""
    for digit in mnist_test[0][:20]:
        data = encode(made(digit))
        im = decode(data)
        assert in_mnist_form(np.asarray(im)) is None
        expected = ink_map(im)
        for x, ink in (prepared(im), prepared_upload(open_image(data)[0])):
            assert (ink == expected).all()
            assert (x == fit_and_centre(expected)).all()
        rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (19, 20)


def test_no_upload_of_the_realism_benchmark_is_in_mnist_form(mnist_test):
    """Pens, pages, photos and scans are all fitted: the form is MNIST's own and nothing wider."""
    assert all(in_mnist_form(np.asarray(decode(u))) is None for u in realism_uploads(mnist_test))
