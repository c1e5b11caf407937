"""The fit: ink cropped, brought to MNIST's stroke width where it is much thinner or thicker, fitted into 20×20
and placed in 28×28 with its centre of mass in the middle, as NIST and LeCun made MNIST. Training and serving
share these constants, so they can't drift. An upload already in MNIST's form needs none of it (in_mnist_form)."""

import numpy as np
from PIL import ExifTags, Image, ImageOps, TiffImagePlugin, UnidentifiedImageError, WebPImagePlugin  # noqa: F401
from scipy import ndimage

from digits.i18n.message import N_
from digits.imaging.decode import Opened, grey_pixels, load
from digits.imaging.errors import NoDigitFound
from digits.imaging.ink import ink_map, pen_width

# MNIST's pixel mean and standard deviation on [0,1].
MEAN, STD = 0.1307, 0.3081

BOX, FIELD = 20, 28  # the digit is fitted into BOX×BOX, then placed on a FIELD×FIELD canvas
# Stroke width as a share of the ink's longer side (stroke_width()): MNIST's training digits have 0.124 in
# the median (0.09 to 0.17 from the 10th to the 90th percentile), at their own size and at 4×. Thinner than
# THIN of that, or thicker than THICK, a crop is brought to it (at most STROKE_SIDE px on its longer side, for
# speed). THICK is past 95% of MNIST's own training digits (1.54× in the 95th percentile, 1.86× in the 99th).
# THIN is thinner than 97.6% of them (0.59× in the 2nd percentile, 0.73× in the 10th): at 0.75 the fit
# thickened the thinnest eighth of MNIST's own pens, which the network reads as they are. Validation digits as
# uploads (5,000; paper, JPEG, canvas) read 99.28/99.32/99.28% right at 0.6 against 99.26/99.28/99.22% at
# 0.75; 500 training digits in each realism condition 0.2 points better in 18 conditions of 41, worse in 5.
MNIST_STROKE, THIN, THICK, STROKE_SIDE = 0.124, 0.6, 1.5, 80
CENTRE = 14.0  # where MNIST's centres of mass sit, in pixel indices (measured on the training set: 14.0 ± 0.3)
_POSITIONS = np.arange(BOX, dtype=np.float32)  # pixel indices, for centres of mass
_FIELD_POSITIONS = np.arange(FIELD, dtype=np.float32)
_EIGHT = np.ones((3, 3), dtype=bool)  # ink's pieces touch by a corner; the paper's holes only by a side


def stroke_width(ink: np.ndarray) -> float:
    """The stroke width of a mask of ink (ink.pen_width), as a share of its longer side."""
    return pen_width(ink) / max(ink.shape)


def _shape(ink: np.ndarray) -> tuple[int, int]:
    """A mask's pieces and holes: what a change of pen must keep, or a 0 becomes a 6 or an 8 a blob."""
    pieces = ndimage.label(ink, _EIGHT)[1]
    paper = ndimage.label(np.pad(~ink, 1, constant_values=True))[1]
    return pieces, paper - 1


def ink_box(x: np.ndarray) -> np.ndarray:
    """x cropped to its nonzero pixels; empty where it has none."""
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    if rows.size == 0:
        return x[:0, :0]
    return x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def at_most(crop: np.ndarray, side: int) -> np.ndarray:
    """A crop shrunk to at most `side` px on its longer side, its strongest ink 1; one that fits, as it is."""
    h, w = crop.shape
    if max(h, w) <= side:
        return crop
    scale = side / max(h, w)
    small = np.asarray(
        Image.fromarray(crop).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    )
    return small / small.max()


def one_pen(crop: np.ndarray) -> np.ndarray:
    """A crop of ink brought to MNIST's stroke width where its pen is far from it; any other as it is.
    A ballpoint photographed at arm's length draws a line a few per cent of the digit's height, which
    fit_and_centre() would shrink to a faint, broken thread; a marker's strokes fill a small digit's loops. A
    thin pen is grown; a thick one is worn away only where that keeps the digit's pieces and holes, so a loop
    that a marker filled stays filled and an open one open (otherwise it is left: training meets thick pens)."""
    ink = crop >= 0.5 * crop.max()
    width = stroke_width(ink)
    if THIN * MNIST_STROKE <= width <= THICK * MNIST_STROKE:
        return crop
    original, crop = crop, at_most(crop, STROKE_SIDE)  # the distance transforms below cost by the pixel
    ink = ink if crop is original else crop >= 0.5
    side = max(crop.shape)
    # Moving every stroke's sides by this radius brings width / side to MNIST_STROKE, as the box moves too.
    radius = (width - MNIST_STROKE) * side / (2 * (1 - MNIST_STROKE))
    if radius > 0:
        depth = ndimage.distance_transform_edt(np.pad(ink, 1))[1:-1, 1:-1]
        thin = np.minimum(crop, np.clip(depth - radius, 0, 1)).astype(np.float32)
        return ink_box(thin) if _shape(thin >= 0.5) == _shape(ink) else original
    pad = int(-radius) + 2
    distance = ndimage.distance_transform_edt(np.pad(~ink, pad, constant_values=True))
    return ink_box(np.maximum(np.pad(crop, pad), np.clip(0.5 - radius - distance, 0, 1)).astype(np.float32))


def fit_and_centre(x: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit it into BOX×BOX keeping its aspect ratio, centre its mass in FIELD×FIELD."""
    crop = ink_box(x)
    if crop.size == 0:
        raise NoDigitFound(N_("no digit found: no ink in the image; write a digit in dark ink on light paper"))
    crop = one_pen(crop)
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


def in_mnist_form(a: np.ndarray) -> np.ndarray | None:
    """8-bit grey pixels already as MNIST's digits are, read as they are; None for any other. MNIST's form: 28×28,
    the paper one exact level (black, or white for dark on light) over at least half of it, the ink at full
    strength, fitted to BOX on its longer side and centred by its mass to within a pixel. Every one of MNIST's
    60,000 training digits is (its ink 19 or 20 px on its longer side, its centre 13.48 to 14.50, its strongest
    pixel 254 or 255, its paper 55% of it or more). The fit would crop such a digit again where its faint edge ends,
    and thicken the thinnest of MNIST's own pens: 3,000 validation digits as 28×28 PNGs read 99.13% right through
    the fit (THIN at 0.75 then), and 99.33% as they are, as the network reads them in training (the test set, which
    chose nothing: 99.29% and 99.27%, flagged 0.74% and 0.66%)."""
    if a.shape != (FIELD, FIELD) or a.dtype != np.uint8:
        return None
    if 2 * np.count_nonzero(a == 255) >= a.size:
        a = 255 - a
    elif 2 * np.count_nonzero(a == 0) < a.size:
        return None
    strongest = a.max()
    if strongest < 254:
        return None
    # In float32 once: every sum here is a whole number under 2^24, so exact, and the pixels are needed so anyway
    # (41 µs where summing the bytes took 52).
    x = a.astype(np.float32)
    rows, cols = x.sum(1), x.sum(0)  # the ink by row, and by column
    ys, xs = np.flatnonzero(rows), np.flatnonzero(cols)
    mass = float(rows.sum())
    off = max(abs(float(ink @ _FIELD_POSITIONS) / mass - CENTRE) for ink in (rows, cols))
    if max(ys[-1] - ys[0], xs[-1] - xs[0]) + 1 not in (BOX - 1, BOX) or off > 1:
        return None
    return x / np.float32(strongest)


def prepared(im: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Any decoded image as the network's 28×28 input, float32 in [0,1], ink bright on black; and the ink that
    several_digits() judges (the whole image's, before the fit)."""
    # Sized first: np.asarray copies the pixels, 16 µs for a canvas that could never be in MNIST's form.
    x = in_mnist_form(np.asarray(im)) if im.mode == "L" and im.size == (FIELD, FIELD) else None
    if x is not None:
        return x, x
    ink = ink_map(im)
    return fit_and_centre(ink), ink


def prepared_upload(opened: Opened) -> tuple[np.ndarray, np.ndarray]:
    """prepared() for an opened upload. A plain grey PNG in MNIST's form is read from libspng's pixels with no
    Pillow image made of them: for a 28×28 digit, that round trip (Image.fromarray, then np.asarray) took a fifth
    of its prediction (0.85 of Pillow's time with it, 0.65 without: 3 runs of 15 rounds alternated)."""
    pixels = grey_pixels(opened) if opened.size == (FIELD, FIELD) else None
    if pixels is not None and (x := in_mnist_form(pixels)) is not None:
        return x, x
    return prepared(load(opened))


def preprocess(im: Image.Image) -> np.ndarray:
    """An MNIST-style 28×28 float32 array in [0,1] (ink bright on black) from any decoded image."""
    return prepared(im)[0]
