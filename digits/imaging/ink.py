"""The ink of a decoded image, bright on black, whatever its polarity, lighting and paper: the paper's level is
taken off, the rules of lined or squared paper and soft shading are dropped."""

import numpy as np
from PIL import ExifTags, Image, ImageOps, TiffImagePlugin, UnidentifiedImageError, WebPImagePlugin  # noqa: F401
from scipy import ndimage

from digits.i18n.message import N_
from digits.imaging.decode import OPAQUE, luminance
from digits.imaging.errors import NoDigitFound

MIN_CONTRAST = 0.12  # ink must differ from the background by this much of the full range
INK_PIXELS = 16  # ink is what at least this many pixels reach
INK_THRESHOLD = 0.2  # after contrast normalization, fainter pixels are paper texture or shading, not ink
# Rules of lined paper reach across this share of the image, at least two of them (_without_rules). The slope
# search looks at about RULE_SAMPLE ink pixels, along slopes of up to ±6° (as tangents).
RULE_SPAN = 0.8
RULE_SAMPLE = 4096
RULE_SLOPES = np.tan(np.deg2rad(np.arange(-6, 6.25, 0.5)))
RULE_STEEPEST = float(np.abs(RULE_SLOPES).max())
# A mark that nowhere reaches SOLID of the strongest ink, or whose mean is under SHADING, is shading or noise.
SOLID, SHADING = 0.5, 0.4
PAPER_BLOCKS = 5  # the background's opening, in blocks (see _paper)
MEDIAN_SAMPLE = 4096  # a level needs no more pixels than this (its standard error is 2% of the noise)


def _gray_and_alpha(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Luminance in [0,1] and opacity in [0,1] (None when the image is opaque)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I"):
        # convert("L") would clip 16-bit values to 255, turning everything white.
        return np.clip(np.asarray(im, dtype=np.float32) / 65535, 0, 1), None
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float32)
        return np.clip(a / 255 if a.max() > 1 else a, 0, 1), None
    im = luminance(im)  # decode.load() has done it for uploads: this costs nothing then
    if im.mode == "L":
        return np.asarray(im, dtype=np.float32) / 255, None
    la = np.asarray(im)
    if la[..., 1].min() > OPAQUE:  # tested on the bytes, which spares a float copy of the alpha
        return la[..., 0].astype(np.float32) / 255, None
    la = la.astype(np.float32) / 255
    return la[..., 0], la[..., 1]


def _flatten_alpha(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Put transparent areas on a background that contrasts with the strokes.

    A canvas drawing is strokes on nothing: dark strokes go on white, light strokes on black.
    """
    weight = alpha.sum()
    if weight < 1e-3 * alpha.size:
        raise NoDigitFound(N_("no digit found: the image is fully transparent; draw or photograph a digit"))
    stroke = float((gray * alpha).sum() / weight)
    background = 1.0 if stroke < 0.5 else 0.0
    return gray * alpha + background * (1 - alpha)


def _paper(x: np.ndarray) -> np.ndarray:
    """The background's level under each pixel of an ink-bright image, following uneven light and shadows.

    A grey opening at coarse scale: the darkest pixel of each block, the darkest of each 5×5 blocks around it
    (taking away strokes up to five blocks wide), then the brightest of each 5×5 again, smoothed back to full
    size. Without that last step a shadow or a vignette, brighter than the paper around it here, was under
    the estimate by its whole depth near its edge, and became ink. A block is a sixteenth of the longer
    side and at least 16 px.
    """
    h, w = x.shape
    b = max(16, -(-max(h, w) // 16))
    gh, gw = -(-h // b), -(-w // b)
    if max(gh, gw) <= 2:  # every block neighbours every other: one level (1×1), such as a 28x28 crop's
        return np.full((1, 1), x.min(), dtype=x.dtype)
    # Each block's minimum in place, the last row and column of blocks short where b doesn't divide the side.
    coarse = np.minimum.reduceat(np.minimum.reduceat(x, np.arange(0, h, b), axis=0), np.arange(0, w, b), axis=1)
    coarse = ndimage.maximum_filter(
        ndimage.minimum_filter(coarse, PAPER_BLOCKS, mode="nearest"), PAPER_BLOCKS, mode="nearest"
    )
    if coarse.min() == coarse.max():  # flat paper, such as a drawing's: smoothing leaves it as it is
        return np.full((h, w), coarse[0, 0], dtype=x.dtype)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BILINEAR))


def _median(a: np.ndarray) -> float:
    """np.median of a strided sample of at most MEDIAN_SAMPLE values.

    Sorted, not np.median or np.partition: numpy's introselect slows down a hundredfold on the few distinct
    levels of a clean drawing (24 ms for a two-level 512×512 image), while its SIMD sort stays fast.
    """
    a = a.ravel()
    a = np.sort(a[:: -(-a.size // MEDIAN_SAMPLE)])
    mid = a.size // 2
    return float(a[mid] if a.size % 2 else (a[mid - 1] + a[mid]) / 2)


def _extremes(a: np.ndarray, k: int) -> tuple[float, float]:
    """The k-th smallest and k-th largest values, counted from 0. A drawing's few levels make np.partition slow
    (0.8 ms at 512×512), and there the k-th is the minimum or maximum itself, repeated more than k times."""
    lo, hi = a.min(), a.max()
    if np.count_nonzero(a == lo) > k and np.count_nonzero(a == hi) > k:
        return lo, hi
    n = a.size
    found = np.partition(a.ravel(), (k, n - 1 - k))
    return found[k], found[n - 1 - k]


def _ink(gray: np.ndarray) -> np.ndarray:
    """Ink bright on black, in [0,1], whatever the polarity, contrast and lighting of the source."""
    # Most of an image is paper. Not its border's median: a vignette darkens the border most, and light paper
    # with dark corners was taken for chalk on a board.
    background = _median(gray)
    # The 16th darkest and lightest pixels: robust to a few specks, yet a tiny digit in a big image still counts.
    dark, light = _extremes(gray, min(INK_PIXELS, gray.size // 2))
    # The ink is whichever extreme lies further from the background: dark pen on paper, or chalk on a board.
    if background - dark > light - background:
        gray, extreme = 1 - gray, 1 - dark
    else:
        extreme = light
    paper = _paper(gray)
    x = gray - paper
    # The block minima sit at the bottom of the paper's noise; most pixels are paper, so the median is its level.
    offset = _median(x)
    x -= offset
    # The strongest ink against the typical paper.
    ink = float(extreme - _median(paper) - offset)
    if ink < MIN_CONTRAST:
        raise NoDigitFound(
            N_("no digit found: the image is blank or nearly uniform; write a digit in dark ink on light paper")
        )
    x /= ink
    x[x < INK_THRESHOLD] = 0  # negatives included, so only the top needs clipping
    np.minimum(x, 1, out=x)
    if paper.shape == (1, 1):  # too small to hold rules, or light uneven enough to leave shading
        return x
    return _without_shading(_without_rules(x))


def _without_rules(x: np.ndarray) -> np.ndarray:
    """The ink without the rules of lined or squared paper: thin straight lines across most of the page.

    They are found by projecting the ink pixels along slopes up to ±6°, for a photo taken a little askew:
    a rule fills one row of the projection at its own slope. Each rule's typical level (its median along
    its length, which a digit crosses only briefly) is taken off the pixels along it, so that a stroke
    crossing a rule keeps its ink. Only an image whose ink reaches across nearly all its columns (or rows)
    is searched: a digit alone rarely does, and it is spared the cost.
    """
    for axis in (0, 1):
        if x.any(axis).mean() >= RULE_SPAN:
            x = _rules_removed(x if axis == 0 else x.T)
            x = x if axis == 0 else x.T
    return x


def _rules_removed(x: np.ndarray) -> np.ndarray:
    """_without_rules() for horizontal rules."""
    h, w = x.shape
    ys, xs = np.nonzero(x)
    centred = (xs - w / 2).astype(np.float32)
    # The slope is searched on every k-th ink pixel, taken row by row, about RULE_SAMPLE in all: a rule keeps
    # a k-th of its pixels, and the search costs a k-th.
    k = max(1, ys.size // RULE_SAMPLE)
    ys_k, centred_k = ys[::k].astype(np.float32), centred[::k]
    # Rows are counted from this far above the image, so that none is negative at the steepest slope: `+ h`
    # was not enough for an image over 19 times as wide as high (the fuzzer's 84×3 TIFF was a 500).
    offset = int(np.ceil(RULE_STEEPEST * w / 2)) + 1
    best, best_rows, best_slope = 0, np.empty(0, dtype=np.int64), 0.0
    for slope in RULE_SLOPES:
        rows = np.rint(ys_k - slope * centred_k).astype(np.int64) + offset
        full = np.flatnonzero(np.bincount(rows, minlength=h + 2 * offset) >= RULE_SPAN * w / k)
        # Rules come several to a page; one full row alone may be a digit's bar, cropped tight.
        rules = 1 + np.count_nonzero(np.diff(full) > 1) if full.size else 0
        if rules >= 2 and full.size > best:
            best, best_rows, best_slope = full.size, full, slope
    if best == 0:
        return x
    rows = np.rint(ys - np.float32(best_slope) * centred).astype(np.int64) + offset
    on_rule = np.isin(rows, best_rows)
    y, c, r = ys[on_rule], xs[on_rule], rows[on_rule]
    # One level for the whole rule: a digit's bar can lie along a rule for a while, where the median of a
    # stretch would be the bar's. (Levels by stretch, for rules in a shadow's edge, read no better.)
    names, index = np.unique(r, return_inverse=True)
    levels = np.asarray(ndimage.median(x[y, c], index, np.arange(names.size)), dtype=np.float32)
    x = x.copy()
    x[y, c] = np.maximum(x[y, c] - levels[index], 0)
    x[x < INK_THRESHOLD] = 0
    return x


def _without_shading(x: np.ndarray) -> np.ndarray:
    """Only marks that look like ink. What the paper's estimate left of a shadow's edge or a vignette's
    corners, and sensor noise over dark paper, pass the ink threshold but stay soft: they never reach
    SOLID, or their mean stays under SHADING. A pen's stroke reaches the strongest ink along its middle
    and holds near it: even a ballpoint line 2 px wide has a mean over 0.5."""
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    if rows.size == 0:
        return x
    # Only the box around the ink is labelled: a digit on a page takes a fraction of it.
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    labels, n = ndimage.label(x[box] > 0, structure=np.ones((3, 3)))
    if n <= 1:
        return x
    # Counted over the ink's pixels with bincount: ndimage.maximum sorts the whole image, 30 ms at 512×384.
    inked = labels > 0
    marks, values = labels[inked], x[box][inked]
    mean = np.bincount(marks, values, minlength=n + 1) / np.maximum(np.bincount(marks, minlength=n + 1), 1)
    ink = mean >= SHADING
    solid = np.zeros(n + 1, dtype=bool)
    solid[marks[values >= SOLID]] = True
    ink &= solid
    ink[0] = False
    out = np.zeros_like(x)
    out[box] = np.where(ink[labels], x[box], np.float32(0))
    return out


def ink_map(im: Image.Image) -> np.ndarray:
    """The ink of any decoded image, bright on black in [0,1], at the decoded size; paper is 0."""
    gray, alpha = _gray_and_alpha(im)
    if alpha is not None:
        gray = _flatten_alpha(gray, alpha)
    return _ink(gray)
