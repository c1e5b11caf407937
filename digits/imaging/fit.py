"""The fit: ink cropped, brought to MNIST's stroke width where it is much thinner, fitted into 20×20 and placed in
28×28 with its centre of mass in the middle, as NIST and LeCun made MNIST. Training and serving share these
constants, so they can't drift."""

import numpy as np
from PIL import ExifTags, Image, ImageOps, TiffImagePlugin, UnidentifiedImageError, WebPImagePlugin  # noqa: F401
from scipy import ndimage

from digits.i18n.message import N_
from digits.imaging.errors import NoDigitFound
from digits.imaging.ink import ink_map, pen_width

# MNIST's pixel mean and standard deviation on [0,1].
MEAN, STD = 0.1307, 0.3081

BOX, FIELD = 20, 28  # the digit is fitted into BOX×BOX, then placed on a FIELD×FIELD canvas
# Stroke width as a share of the ink's longer side (stroke_width()): MNIST's training digits have 0.124 in
# the median (0.09 to 0.17 from the 10th to the 90th percentile), at their own size and at 4×. Thinner than
# THIN of that, a crop is thickened (at most STROKE_SIDE px on its longer side, for speed).
MNIST_STROKE, THIN, STROKE_SIDE = 0.124, 0.75, 80
CENTRE = 14.0  # where MNIST's centres of mass sit, in pixel indices (measured on the training set: 14.0 ± 0.3)
_POSITIONS = np.arange(BOX, dtype=np.float32)  # pixel indices, for centres of mass


def stroke_width(ink: np.ndarray) -> float:
    """The stroke width of a mask of ink (ink.pen_width), as a share of its longer side."""
    return pen_width(ink) / max(ink.shape)


def _thickened(crop: np.ndarray) -> np.ndarray:
    """A crop of ink whose strokes are much thinner than MNIST's, thickened to MNIST's width; any other as it
    is. A ballpoint photographed at arm's length draws a line a few per cent of the digit's height, which
    fit_and_centre() would shrink to a faint, broken thread. Pens thicker than MNIST's are left alone: no
    thinning reopens a loop that a marker has filled, so training meets thick pens instead."""
    ink = crop >= 0.5 * crop.max()
    width = stroke_width(ink)
    if width >= THIN * MNIST_STROKE:
        return crop
    h, w = crop.shape
    if max(h, w) > STROKE_SIDE:  # the distance transform below costs by the pixel; the fit needs no more
        scale = STROKE_SIDE / max(h, w)
        small = Image.fromarray(crop).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
        crop = np.asarray(small)
        crop = crop / crop.max()
        ink = crop >= 0.5
    side = max(crop.shape)
    # Growing every stroke by this radius on each side brings width / side to MNIST_STROKE, as the box grows too.
    radius = (MNIST_STROKE - width) * side / (2 * (1 - MNIST_STROKE))
    pad = int(radius) + 2
    distance = ndimage.distance_transform_edt(np.pad(~ink, pad, constant_values=True))
    thick = np.maximum(np.pad(crop, pad), np.clip(radius + 0.5 - distance, 0, 1)).astype(np.float32)
    rows, cols = np.flatnonzero(thick.any(1)), np.flatnonzero(thick.any(0))
    return thick[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def fit_and_centre(x: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit it into BOX×BOX keeping its aspect ratio, centre its mass in FIELD×FIELD."""
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    if rows.size == 0:
        raise NoDigitFound(N_("no digit found: no ink in the image; write a digit in dark ink on light paper"))
    crop = _thickened(x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Area averaging when shrinking is the anti-aliasing MNIST had; bilinear when enlarging avoids blocks.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    # Already BOX on its longer side, as MNIST's own digits are, the crop is what Pillow's resize would return.
    small = crop if size == (w, h) else np.asarray(Image.fromarray(crop).resize(size, resample))
    # A thin pen line shrinks to a faint one; MNIST strokes always reach full intensity.
    small = small / small.max()
    sh, sw = small.shape
    mass = float(small.sum())
    cy = float(small.sum(1) @ _POSITIONS[:sh]) / mass
    cx = float(small.sum(0) @ _POSITIONS[:sw]) / mass
    top = min(max(round(CENTRE - cy), 0), FIELD - sh)
    left = min(max(round(CENTRE - cx), 0), FIELD - sw)
    out = np.zeros((FIELD, FIELD), dtype=np.float32)
    out[top : top + sh, left : left + sw] = small
    return out


def preprocess(im: Image.Image) -> np.ndarray:
    """An MNIST-style 28×28 float32 array in [0,1] (ink bright on black) from any decoded image."""
    return fit_and_centre(ink_map(im))
