"""Decoding and preprocessing: any uploaded image, bounded in cost, turned into MNIST-style 28×28 inputs.

People upload photos and scans of dark ink on light paper, screenshots and
canvas drawings with transparent backgrounds, rarely a white-on-black 28x28
crop. preprocess() redoes what NIST and LeCun did to make MNIST: the ink is made
bright on black (evening out uneven light on the paper), cropped, fitted into
20x20 keeping its aspect ratio with anti-aliasing, and placed in 28x28 with its
centre of mass in the middle. ink_groups() splits the ink into digits for segment.py.
Training and serving share normalize() and these constants, so they can't drift.
"""

import io
import struct
import warnings
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, TiffImagePlugin, UnidentifiedImageError, WebPImagePlugin  # noqa: F401
from scipy import ndimage

import formats

Pixels = TypeVar("Pixels", torch.Tensor, np.ndarray)

# Pillow warns of an upload's corrupt EXIF and reads on without it, as load() does: the image as stored. The
# warning tells an operator nothing, and strangers could fill the log with it. (Set here, not around each
# read: catch_warnings is not thread-safe, and uploads are read in a threadpool.)
EXIF_WARNING = r"(Possibly )?[Cc]orrupt EXIF data"
warnings.filterwarnings("ignore", EXIF_WARNING, UserWarning)

# MNIST's pixel mean and standard deviation on [0,1].
MEAN, STD = 0.1307, 0.3081

DEFAULT_MAX_PIXELS = 40_000_000  # a 12-megapixel phone photo fits with room to spare
# No EPS, PDF, etc.: fewer parsers facing the internet. Pillow registers PNG, JPEG, GIF and BMP on its own;
# the plugin imports above register the rest without loading all fifty.
# Phone photos in MPO open through the JPEG plugin.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
WORK_SIZE = 512  # big images are reduced to this longer side first; a digit needs no more
MIN_CONTRAST = 0.12  # ink must differ from the background by this much of the full range
INK_PIXELS = 16  # ink is what at least this many pixels reach
INK_THRESHOLD = 0.2  # after contrast normalization, fainter pixels are paper texture or shading, not ink
BOX, FIELD = 20, 28  # the digit is fitted into BOX×BOX, then placed on a FIELD×FIELD canvas
# Rules of lined paper reach across this share of the image, at least two of them (_without_rules). The slope
# search looks at about RULE_SAMPLE ink pixels, along slopes of up to ±6° (as tangents).
RULE_SPAN = 0.8
RULE_SAMPLE = 4096
RULE_SLOPES = np.tan(np.deg2rad(np.arange(-6, 6.25, 0.5)))
# A mark that nowhere reaches SOLID of the strongest ink, or whose mean is under SHADING, is shading or noise.
SOLID, SHADING = 0.5, 0.4
# Stroke width as a share of the ink's longer side (stroke_width()): MNIST's training digits have 0.124 in
# the median (0.09 to 0.17 from the 10th to the 90th percentile), at their own size and at 4×. Thinner than
# THIN of that, a crop is thickened (at most STROKE_SIDE px on its longer side, for speed).
MNIST_STROKE, THIN, STROKE_SIDE = 0.124, 0.75, 80
PAPER_BLOCKS = 5  # the background's opening, in blocks (see _paper)
MEDIAN_SAMPLE = 4096  # a level needs no more pixels than this (its standard error is 2% of the noise)
CENTRE = 14.0  # where MNIST's centres of mass sit, in pixel indices (measured on the training set: 14.0 ± 0.3)
_POSITIONS = np.arange(BOX, dtype=np.float32)  # pixel indices, for centres of mass
FULL_SIZE = "digits.full_size"  # where decode() leaves the upload's size before it was scaled down
DUST = 0.02  # strokes with less ink than this share of the largest are specks, not digits
STACKED = 0.4  # strokes whose columns overlap this share of the narrower one's belong to one digit
# A group shorter than this share of the median group's height is part of a neighbour. Chosen on numbers of
# MNIST training digits: 0.3 and 0.4 read the same, 0.5 read fewer numbers right.
FRAGMENT = 0.4
# Marks (connected strokes past the dust) one image may hold: a 32-digit number with every stroke broken in
# three has about a hundred.
MAX_MARKS = 256

# What a malformed file can make Pillow raise while it parses or decodes.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    struct.error,
    Image.DecompressionBombError,
)


class ImageError(ValueError):
    """An upload that can't be turned into a digit; the message tells the user what to do."""


class UnreadableImage(ImageError):
    pass


class ImageTooLarge(ImageError):
    pass


class NoDigitFound(ImageError):
    pass


class TooManyMarks(ImageError):
    pass


def normalize(x: Pixels) -> Pixels:
    """Standardize pixels already scaled to [0,1], in a tensor or an array."""
    return (x - MEAN) / STD


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, float]:
    """Open an upload's header, refusing one that would cost too much before any pixel is decoded: the image,
    and the estimated ms on one core that decode() will take to load it (formats.py)."""
    if not data:
        raise UnreadableImage("the file is empty; choose an image of a digit")
    try:
        formats.check_structure(data)
        im = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
        formats.check_metadata(im)
    except formats.CostlyImage as e:
        raise ImageTooLarge(str(e)) from e
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"the image has more than {max_pixels:,} pixels; scale it down and try again") from e
    except (UnidentifiedImageError, *_DECODE_ERRORS) as e:
        raise UnreadableImage(
            "the file is not an image we can read; send a PNG, JPEG, GIF, BMP, TIFF or WebP file"
        ) from e
    if im.width * im.height > max_pixels:
        raise ImageTooLarge(
            f"the image is {im.width}×{im.height} pixels, over the limit of {max_pixels:,}; scale it down and try again"
        )
    cost = formats.decode_ms(im)
    if cost > formats.DECODE_BUDGET_MS:
        raise ImageTooLarge(
            f"the image is {im.width}×{im.height} pixels, too many to read quickly as a {im.format} of this kind; "
            "scale it down, or send it as a JPEG"
        )
    return im, cost


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image, refusing absurd dimensions and costly files before any pixel is decoded."""
    return load(open_image(data, max_pixels)[0])


def load(im: Image.Image) -> Image.Image:
    """Decode an opened image upright, reduced to at most WORK_SIZE on its longer side."""
    full = im.size
    if im.format in ("JPEG", "MPO"):
        # Let the JPEG decoder scale by 1/2, 1/4 or 1/8 in the DCT, keeping at least half of WORK_SIZE:
        # a 12-megapixel phone photo decodes at 500×375, several times faster than in full.
        im.draft("L", (WORK_SIZE // 2, WORK_SIZE // 2))
    try:
        im.load()  # first frame only, for animations and multi-page files
        if im.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8):  # a quarter turn swaps the sides
            full = full[::-1]
        ImageOps.exif_transpose(im, in_place=True)
        if max(im.size) > WORK_SIZE:
            im.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    except _DECODE_ERRORS as e:
        raise UnreadableImage("the image file is damaged or truncated; export it again and retry") from e
    im.info[FULL_SIZE] = full  # as the user sees it, for boxes drawn on the upload
    return im


def _gray_and_alpha(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Luminance in [0,1] and opacity in [0,1] (None when the image is opaque)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I"):
        # convert("L") would clip 16-bit values to 255, turning everything white.
        return np.clip(np.asarray(im, dtype=np.float32) / 65535, 0, 1), None
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float32)
        return np.clip(a / 255 if a.max() > 1 else a, 0, 1), None
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        la = np.asarray(im.convert("RGBA").convert("LA"), dtype=np.float32) / 255
        return la[..., 0], la[..., 1]
    return np.asarray(im if im.mode == "L" else im.convert("L"), dtype=np.float32) / 255, None


def _flatten_alpha(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Put transparent areas on a background that contrasts with the strokes.

    A canvas drawing is strokes on nothing: dark strokes go on white, light strokes on black.
    """
    weight = alpha.sum()
    if weight < 1e-3 * alpha.size:
        raise NoDigitFound("no digit found: the image is fully transparent; draw or photograph a digit")
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
    coarse = np.pad(x, ((0, gh * b - h), (0, gw * b - w)), mode="edge").reshape(gh, b, gw, b).min(axis=(1, 3))
    coarse = ndimage.maximum_filter(
        ndimage.minimum_filter(coarse, PAPER_BLOCKS, mode="nearest"), PAPER_BLOCKS, mode="nearest"
    )
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


def _ink(gray: np.ndarray) -> np.ndarray:
    """Ink bright on black, in [0,1], whatever the polarity, contrast and lighting of the source."""
    # Most of an image is paper. Not its border's median: a vignette darkens the border most, and light paper
    # with dark corners was taken for chalk on a board.
    background = _median(gray)
    # The 16th darkest and lightest pixels: robust to a few specks, yet a tiny digit in a big image still counts.
    n = gray.size
    k = min(INK_PIXELS, n // 2)
    dark, light = np.partition(gray.ravel(), (k, n - 1 - k))[[k, n - 1 - k]]
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
            "no digit found: the image is blank or nearly uniform; write a digit in dark ink on light paper"
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
    best, best_rows, best_slope = 0, np.empty(0, dtype=np.int64), 0.0
    for slope in RULE_SLOPES:
        rows = np.rint(ys_k - slope * centred_k).astype(np.int64) + h  # + h: never negative at these slopes
        full = np.flatnonzero(np.bincount(rows, minlength=3 * h) >= RULE_SPAN * w / k)
        # Rules come several to a page; one full row alone may be a digit's bar, cropped tight.
        rules = 1 + np.count_nonzero(np.diff(full) > 1) if full.size else 0
        if rules >= 2 and full.size > best:
            best, best_rows, best_slope = full.size, full, slope
    if best == 0:
        return x
    rows = np.rint(ys - np.float32(best_slope) * centred).astype(np.int64) + h
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
    labels, n = ndimage.label(x > 0, structure=np.ones((3, 3)))
    if n <= 1:
        return x
    # Counted over the ink's pixels with bincount: ndimage.maximum sorts the whole image, 30 ms at 512×384.
    inked = labels > 0
    marks, values = labels[inked], x[inked]
    mean = np.bincount(marks, values, minlength=n + 1) / np.maximum(np.bincount(marks, minlength=n + 1), 1)
    ink = mean >= SHADING
    solid = np.zeros(n + 1, dtype=bool)
    solid[marks[values >= SOLID]] = True
    ink &= solid
    ink[0] = False
    return np.where(ink[labels], x, np.float32(0))


def stroke_width(ink: np.ndarray) -> float:
    """The stroke width of a mask of ink, as a share of its longer side: twice its area over its perimeter,
    since a stroke's outline runs along both its sides. The perimeter is counted in pixel edges, which
    overcount a slanted outline by 4/π on average (Cauchy-Crofton), so that is taken off. Not the distance
    transform along the centre line: this costs 10 µs on a 20×20 crop, where that costs 80."""
    area = np.count_nonzero(ink)
    m = np.pad(ink, 1)  # so that the outline along the crop's own edges counts
    edges = np.count_nonzero(m[1:] != m[:-1]) + np.count_nonzero(m[:, 1:] != m[:, :-1])
    return 2 * area / (edges * np.pi / 4) / max(ink.shape)


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
        raise NoDigitFound("no digit found: no ink in the image; write a digit in dark ink on light paper")
    crop = _thickened(x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Area averaging when shrinking is the anti-aliasing MNIST had; bilinear when enlarging avoids blocks.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    small = np.asarray(Image.fromarray(crop).resize(size, resample))
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


def ink_map(im: Image.Image) -> np.ndarray:
    """The ink of any decoded image, bright on black in [0,1], at the decoded size; paper is 0."""
    gray, alpha = _gray_and_alpha(im)
    if alpha is not None and alpha.min() < 0.99:
        gray = _flatten_alpha(gray, alpha)
    return _ink(gray)


def preprocess(im: Image.Image) -> np.ndarray:
    """An MNIST-style 28×28 float32 array in [0,1] (ink bright on black) from any decoded image."""
    return fit_and_centre(ink_map(im))


@dataclass(frozen=True)
class Group:
    """Ink that belongs to one digit, or to touching digits: its pixels and where they lie in the ink map."""

    ink: np.ndarray  # the group's own ink, cropped to its box; other groups' ink inside the box is 0
    top: int
    left: int


def _grouped(x: np.ndarray) -> tuple[np.ndarray, list[tuple[list[int], int, int]]]:
    """Connected strokes (scipy.ndimage.label, 8-connected) grouped into digits: the labels, and each group's
    labels and columns, left to right. Strokes stacked over one another, such as a 5's detached bar or a
    broken stroke, join the group whose columns they share; a mark much shorter than the others, such as a
    5's bar drawn off to the side, joins its nearest neighbour; dust is dropped."""
    labels, n = ndimage.label(x > 0, structure=np.ones((3, 3)))
    if n == 0:
        raise NoDigitFound("no digit found: no ink in the image; write a digit in dark ink on light paper")
    mass = np.asarray(ndimage.sum_labels(x, labels, index=np.arange(1, n + 1)))
    kept = np.flatnonzero(mass >= DUST * mass.max())
    # Counted before anything costs per mark: 64,000 dots in a 1 KB PNG took 4 s to group.
    if kept.size > MAX_MARKS:
        raise TooManyMarks(
            f"the image holds {kept.size:,} separate marks, too many for handwriting; "
            "crop it to the digits, on plain paper"
        )
    boxes = ndimage.find_objects(labels)
    groups: list[tuple[list[int], slice, slice]] = []  # each group's labels, rows and columns
    # Marks come left to right, so a group that ends before a mark starts can't take it or any later one.
    open_groups: list[int] = []
    for i in sorted(kept.tolist(), key=lambda i: boxes[i][1].start):
        rows, cols = boxes[i]
        open_groups = [k for k in open_groups if groups[k][2].stop > cols.start]
        for k in open_groups:
            members, g_rows, g_cols = groups[k]
            shared = min(cols.stop, g_cols.stop) - max(cols.start, g_cols.start)
            if shared >= STACKED * min(cols.stop - cols.start, g_cols.stop - g_cols.start):
                groups[k] = ([*members, i + 1], _union(rows, g_rows), _union(cols, g_cols))
                break
        else:
            open_groups.append(len(groups))
            groups.append(([i + 1], rows, cols))
    groups.sort(key=lambda g: g[2].start)
    tall = np.median([rows.stop - rows.start for _, rows, _ in groups])
    while len(groups) > 1:
        short = [k for k, (_, rows, _) in enumerate(groups) if rows.stop - rows.start < FRAGMENT * tall]
        if not short:
            break
        members, rows, cols = groups.pop(short[0])
        # It joins the neighbour across the narrower gap of columns, on the left (now at short[0] - 1) or right.
        neighbours = [k for k in (short[0] - 1, short[0]) if 0 <= k < len(groups)]
        k = min(neighbours, key=lambda k: max(groups[k][2].start - cols.stop, cols.start - groups[k][2].stop))
        groups[k] = ([*groups[k][0], *members], _union(rows, groups[k][1]), _union(cols, groups[k][2]))
    return labels, [(members, cols.start, cols.stop) for members, _, cols in groups]


def _union(a: slice, b: slice) -> slice:
    return slice(min(a.start, b.start), max(a.stop, b.stop))


def ink_groups(x: np.ndarray) -> list[Group]:
    """The ink split into digit-sized groups, left to right, each with its own ink only."""
    labels, groups = _grouped(x)
    out = []
    for members, c0, c1 in groups:
        mask = np.isin(labels[:, c0:c1], members)
        rows = np.flatnonzero(mask.any(1))
        r0, r1 = rows[0], rows[-1] + 1
        out.append(Group(np.where(mask[r0:r1], x[r0:r1, c0:c1], 0), int(r0), int(c0)))
    return out


def several_digits(x: np.ndarray) -> bool:
    """Whether the ink holds several digits side by side. Only ink wider than tall is looked at: single
    digits almost never are, and it spares most uploads the labelling (40 µs of a 28×28's 400)."""
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    return cols[-1] - cols[0] > rows[-1] - rows[0] and len(_grouped(x)[1]) > 1


def decode_cost(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> float:
    """The estimated ms that decoding an upload will take (formats.decode_ms); 0 for one that will be refused."""
    try:
        return open_image(data, max_pixels)[1]
    except ImageError:
        return 0.0
