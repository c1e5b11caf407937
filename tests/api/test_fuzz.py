"""Property-based fuzzing: hypothesis on preprocessing, schemathesis on the app's own OpenAPI schema."""

import io

import numpy as np
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from digits.imaging.decode import decode
from digits.imaging.errors import ImageError
from digits.imaging.fit import preprocess
from main import app

MODES = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2, "I;16": 1, "1": 1, "P": 1, "F": 1, "CMYK": 4, "I": 1}


@st.composite
def images(draw) -> Image.Image:
    mode = draw(st.sampled_from(sorted(MODES)))
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    dtype = {"I;16": np.uint16, "F": np.float32, "I": np.int32}.get(mode, np.uint8)
    elements = st.floats(-1e6, 1e6, width=32) if mode == "F" else None
    shape = (h, w) if MODES[mode] == 1 else (h, w, MODES[mode])
    a = draw(arrays(dtype, shape, elements=elements))
    if mode in ("1", "P"):
        return Image.fromarray(a).convert(mode)
    return Image.fromarray(a, mode) if mode in ("LA", "CMYK") else Image.fromarray(a).convert(mode)


def assert_mnist_style_or_clear_error(run) -> None:
    try:
        x = run()
    except ImageError as e:
        x = e
    if isinstance(x, ImageError):
        assert len(str(x)) > 15, x
        return
    assert x.shape == (28, 28)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()
    assert x.min() >= 0
    assert x.max() <= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images())
def test_preprocess_takes_any_image(im):
    assert_mnist_style_or_clear_error(lambda: preprocess(im))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images(), st.sampled_from(["PNG", "TIFF", "WEBP", "BMP", "GIF", "JPEG"]))
def test_decode_and_preprocess_take_any_encoded_image(im, fmt):
    buf = io.BytesIO()
    try:
        im.save(buf, fmt)
    except (OSError, ValueError, KeyError):
        return  # Pillow can't write this mode in this format; nothing to decode
    assert_mnist_style_or_clear_error(lambda: preprocess(decode(buf.getvalue())))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_decode_takes_any_bytes(data):
    assert_mnist_style_or_clear_error(lambda: preprocess(decode(data)))


# A correction's body is refused with 413 past its byte limit: invalid data far over the id's length in
# characters (65,537 emoji, escaped, are 786 KB) is rightly refused so, before it is parsed.
CONFIG = SchemathesisConfig.from_str(
    """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
"""
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_schema_and_never_fails(case):
    # Every other default check stays on: no 5xx, documented status codes, content types and response schemas.
    # Any bytes fit the schema's `binary`, so a blank or broken "image" is rightly refused with a 4xx.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
