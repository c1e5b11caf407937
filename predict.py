"""Turn any uploaded image into a 28x28 MNIST-style input, and predict its digit.

    python predict.py seven.png photo.jpg    # one line per file: path, digit, confidence
    python predict.py scans/ --format csv    # every image under a folder, on every core: CSV (or jsonl)
    python predict.py --number meter.jpg     # a whole number, digit by digit (segment.py)

People upload photos and scans of dark ink on light paper, screenshots and
canvas drawings with transparent backgrounds, rarely a white-on-black 28x28
crop. preprocess() redoes what NIST and LeCun did to make MNIST: the ink is made
bright on black (evening out uneven light on the paper), cropped, fitted into
20x20 keeping its aspect ratio with anti-aliasing, and placed in 28x28 with its
centre of mass in the middle.
Training and serving share normalize() and these constants, so they can't drift.
"""

import argparse
import csv
import gc
import hashlib
import io
import json
import math
import multiprocessing
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, TiffImagePlugin, UnidentifiedImageError, WebPImagePlugin  # noqa: F401
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from scipy import ndimage
from tqdm import tqdm

import formats
from model import MLP

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "mnist_mlp.safetensors"

Pixels = TypeVar("Pixels", torch.Tensor, np.ndarray)
Prepared = tuple[np.ndarray, bool]  # an upload's 28×28 input, and whether it seems to hold several digits

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
DEFAULT_UNCERTAIN_BELOW = 0.5  # for weights that don't record a threshold chosen on validation
MEDIAN_SAMPLE = 4096  # a level needs no more pixels than this (its standard error is 2% of the noise)
CENTRE = 14.0  # where MNIST's centres of mass sit, in pixel indices (measured on the training set: 14.0 ± 0.3)
_POSITIONS = np.arange(BOX, dtype=np.float32)  # pixel indices, for centres of mass
FULL_SIZE = "digits.full_size"  # where decode() leaves the upload's size before it was scaled down
# The hint that /predict gives with an image of several digits.
SEVERAL_DIGITS = "the image seems to hold several digits; POST it to /predict/number to read the whole number"
# The hint for an image that doesn't look like a digit at all.
NOT_A_DIGIT = "this doesn't look like a handwritten digit; send a photo, scan or drawing of one digit"
# An uncertain answer whose two likeliest digits together fall short of this is no digit, not a choice between
# two: trained on outliers (outliers.py), the model spreads its answer over all ten for what isn't a digit.
NOT_A_DIGIT_TOP_TWO = 0.75
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


class WeightsError(RuntimeError):
    """The weights file is missing, corrupt, or not the one recorded."""


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

    The darkest pixel of each coarse block and its eight neighbours, smoothed back to full size. A block is
    an eighth of the longer side and at least 16 px, so three of them span more than any pen stroke.
    """
    h, w = x.shape
    b = max(16, -(-max(h, w) // 8))
    gh, gw = -(-h // b), -(-w // b)
    if max(gh, gw) <= 2:  # every block neighbours every other: one level, such as a 28x28 crop's
        return np.full_like(x, x.min())
    coarse = np.pad(x, ((0, gh * b - h), (0, gw * b - w)), mode="edge").reshape(gh, b, gw, b).min(axis=(1, 3))
    p = np.pad(coarse, 1, mode="edge")
    coarse = np.minimum.reduce([p[i : i + gh, j : j + gw] for i in range(3) for j in range(3)])
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
    background = _median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
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
    return np.minimum(x, 1, out=x)


def fit_and_centre(x: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit it into BOX×BOX keeping its aspect ratio, centre its mass in FIELD×FIELD."""
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    if rows.size == 0:
        raise NoDigitFound("no digit found: no ink in the image; write a digit in dark ink on light paper")
    crop = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
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


@dataclass
class Prediction:
    digit: int
    confidence: float
    probabilities: list[float]
    uncertain: bool  # confidence below the threshold recorded with the weights, or several digits
    image: np.ndarray  # the 28×28 input the model saw, in [0,1]
    several: bool = False  # the image seems to hold several digits side by side
    not_a_digit: bool = False  # uncertain, and not between two digits: it doesn't look like a digit at all

    @property
    def hint(self) -> str | None:
        """What to send instead, when the answer is no single digit."""
        return SEVERAL_DIGITS if self.several else NOT_A_DIGIT if self.not_a_digit else None


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def to_png(image: np.ndarray) -> bytes:
    """The 28×28 input as an 8-bit grayscale PNG.

    Written with zlib rather than Pillow: Pillow's encoder took 34 µs a call on 784 pixels, nearly all
    of it Python, a tenth of a whole prediction; these three chunks take 15 µs.
    """
    pixels = np.rint(image * 255).astype(np.uint8)
    h, w = pixels.shape
    rows = np.zeros((h, w + 1), dtype=np.uint8)  # each row starts with filter type 0 (none)
    rows[:, 1:] = pixels
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8 bits, grayscale, deflate, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
        + _png_chunk(b"IEND", b"")
    )


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sha256_path(weights: Path) -> Path:
    """Where a weights file's sha256 is recorded, in `sha256sum` format."""
    return weights.with_suffix(".sha256")


def save_weights(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write safetensors weights and record their sha256 beside them, for Predictor to check."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    sha256_path(path).write_text(f"{file_sha256(path)}  {path.name}\n")


def load_model(path: Path = DEFAULT_WEIGHTS) -> MLP:
    """The MLP with weights from a safetensors file (no pickle involved)."""
    return model_from_state(load_file(str(path)))


def model_from_state(state: dict[str, torch.Tensor]) -> MLP:
    model = MLP()
    model.load_state_dict(state)
    return model.eval()


class Predictor:
    """Loads the weights once, checks them, and predicts on batches of uploads."""

    def __init__(self, weights: Path = DEFAULT_WEIGHTS, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        weights = Path(weights)
        fix = "run `python train.py` to create it, or restore it with `git checkout -- weights/`"
        if not weights.is_file():
            raise WeightsError(f"weights file {weights} is missing; {fix}")
        self.sha256 = file_sha256(weights)
        recorded = sha256_path(weights)
        if not recorded.is_file():
            raise WeightsError(f"weights file {weights} has no recorded sha256 ({recorded} is missing); {fix}")
        if recorded.read_text().split()[0] != self.sha256:
            raise WeightsError(f"weights file {weights} does not match the sha256 recorded in {recorded}; {fix}")
        try:
            model = load_model(weights)
            with safe_open(str(weights), framework="pt") as f:
                metadata = f.metadata() or {}
        except (SafetensorError, RuntimeError, OSError) as e:
            raise WeightsError(f"weights file {weights} is corrupt ({e}); {fix}") from e
        self._use(model, metadata, max_pixels)

    @classmethod
    def from_state(
        cls, state: dict[str, torch.Tensor], metadata: dict[str, str], max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> "Predictor":
        """A predictor for weights still in memory: train.py measures them before it writes the file."""
        predictor = cls.__new__(cls)
        predictor.sha256 = ""  # a file's hash, and there is no file yet
        predictor._use(model_from_state({k: v.cpu() for k, v in state.items()}), metadata, max_pixels)
        return predictor

    def _use(self, model: MLP, metadata: dict[str, str], max_pixels: int) -> None:
        self.model = model
        self.metadata = metadata
        self.max_pixels = max_pixels
        self.uncertain_below = float(self.metadata.get("uncertain_below", DEFAULT_UNCERTAIN_BELOW))
        # Fitted on validation at training time, so that a confidence of 0.9 is right about 90% of the time.
        self.temperature = float(self.metadata.get("temperature", 1.0))

    def prepare(self, data: bytes) -> Prepared:
        """Decode and preprocess one upload: the 28×28 input, and whether the image holds several digits side
        by side. Raises an ImageError subclass with a message for the user."""
        prepared = self.prepare_within(data, math.inf)
        assert prepared is not None, "nothing is over an infinite budget"
        return prepared

    def prepare_within(self, data: bytes, budget_ms: float, max_bytes: float = math.inf) -> Prepared | None:
        """prepare(), or None, with nothing decoded, for an upload over max_bytes or whose decoding is estimated to
        take longer than budget_ms (formats.decode_ms)."""
        if len(data) > max_bytes:
            return None
        try:
            im, cost = open_image(data, self.max_pixels)
            if cost > budget_ms:
                return None
            x = ink_map(load(im))
            return fit_and_centre(x), several_digits(x)
        except ImageError as e:
            error = type(e)(str(e))
        # Raised afresh, outside the handler, so that it carries no traceback, cause or context: those hold the
        # frames with the decoded pixels, and an error kept in a list or a future would keep them alive.
        raise error

    @torch.inference_mode()
    def classify(self, images: np.ndarray) -> list[Prediction]:
        """Predict a batch of preprocessed N×28×28 images."""
        # Few torch calls: at batch size 1 each costs more than its arithmetic, so the rest is plain Python.
        x = torch.from_numpy(normalize(images))
        probs = torch.softmax(self.model(x) / self.temperature, dim=1).tolist()
        predictions = []
        for row, image in zip(probs, images, strict=True):
            top, second = sorted(row)[-1:-3:-1]
            uncertain = top < self.uncertain_below
            not_a_digit = uncertain and top + second < NOT_A_DIGIT_TOP_TWO
            digit = row.index(top)
            rounded = [round(p, 6) for p in row]
            predictions.append(Prediction(digit, top, rounded, uncertain, image, not_a_digit=not_a_digit))
        return predictions

    def predict(self, data: bytes) -> Prediction:
        return self.finish([self.prepare(data)])[0]

    def finish(self, prepared: list[Prepared]) -> list[Prediction]:
        """Predictions for prepared uploads, in one forward pass."""
        # One upload, the usual case, needs no copy: np.stack costs a few µs of a 0.3 ms prediction.
        images = prepared[0][0][None] if len(prepared) == 1 else np.stack([image for image, _ in prepared])
        predictions = self.classify(images)
        return [_several(p, several) for p, (_, several) in zip(predictions, prepared, strict=True)]

    def predict_many(self, uploads: list[bytes], budget_ms: float | None = None) -> list[Prediction | ImageError]:
        """One result per upload, in order; a bad upload yields its error without failing the rest. Past
        budget_ms of estimated decoding (formats.decode_ms), the remaining uploads are refused unread."""
        prepared: list[Prepared | ImageError] = []
        spent = 0.0
        for data in uploads:
            try:
                if budget_ms is not None:
                    spent += decode_cost(data, self.max_pixels)
                    if spent > budget_ms:
                        raise ImageTooLarge(
                            "not read: the images before it in this request take all the decoding time one request "
                            "may have; send this one in another request"
                        )
                prepared.append(self.prepare(data))
            except ImageError as e:
                # Its traceback would hold this frame, and so this list, and so itself: a cycle that waits for
                # the garbage collector, holding the upload (a 1.6 KB WebP held 310 MB of pixels that way).
                prepared.append(e.with_traceback(None))
        good = [p for p in prepared if not isinstance(p, ImageError)]
        predictions = iter(self.finish(good) if good else [])
        return [p if isinstance(p, ImageError) else next(predictions) for p in prepared]


def decode_cost(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> float:
    """The estimated ms that decoding an upload will take (formats.decode_ms); 0 for one that will be refused."""
    try:
        return open_image(data, max_pixels)[1]
    except ImageError:
        return 0.0


def _several(p: Prediction, several: bool) -> Prediction:
    """A single-digit answer for an image of several digits is no confident answer."""
    if several:
        p.several = p.uncertain = True
        p.not_a_digit = False  # several digits are digits; the hint says how to read them
    return p


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}
CHUNK = 256  # files a worker reads and classifies as one batch: 256 ran 10% faster than 64, 20% than 16
FIELDS = ["path", "digit", "confidence", "uncertain", "not_a_digit", "error"]  # the CSV columns
NUMBER_FIELDS = ["path", "number", "confidence", "uncertain", "error"]  # with --number

_worker: Predictor | None = None  # the model, in each worker process


def image_paths(args: list[Path]) -> list[Path]:
    """Files as given, and every image under a folder, recursively, in sorted order."""
    paths: list[Path] = []
    for arg in args:
        if arg.is_dir():
            paths += sorted(f for f in arg.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        else:
            paths.append(arg)
    return paths


def read_numbers(predictor: Predictor, paths: list[Path]) -> list[dict[str, Any]]:
    """One record per file: the whole number it holds, digit by digit, or why it couldn't be read."""
    from segment import read_number  # here: segment builds on this module

    records: list[dict[str, Any]] = []
    for path in paths:
        try:
            reading = read_number(predictor, path.read_bytes())
        except (OSError, ImageError) as e:
            message = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            records.append({"path": str(path), "error": message})
            continue
        digits = [{"digit": d.prediction.digit, "confidence": round(d.prediction.confidence, 4), "box": d.box}
                  for d in reading.digits]  # fmt: skip
        records.append({"path": str(path), "number": reading.number, "confidence": round(reading.confidence, 4),
                        "uncertain": reading.uncertain, "digits": digits})  # fmt: skip
    return records


def read_files(predictor: Predictor, paths: list[Path]) -> list[dict[str, Any]]:
    """One record per file: its digit and confidence, or why it couldn't be read."""
    uploads: list[bytes] = []
    errors: dict[int, str] = {}
    for i, path in enumerate(paths):
        try:
            uploads.append(path.read_bytes())
        except OSError as e:
            errors[i] = e.strerror or str(e)
            uploads.append(b"")
    results = predictor.predict_many(uploads)
    records: list[dict[str, Any]] = []
    for i, (path, r) in enumerate(zip(paths, results, strict=True)):
        if i in errors or isinstance(r, ImageError):
            records.append({"path": str(path), "error": errors.get(i, str(r))})
        else:
            records.append(
                {
                    "path": str(path),
                    "digit": r.digit,
                    "confidence": round(r.confidence, 4),
                    "uncertain": r.uncertain,
                    "not_a_digit": r.not_a_digit,
                    "probabilities": r.probabilities,
                }
            )
    return records


@dataclass
class Chunk:
    """A run of files, read and written out by one worker: the main process only prints, in order."""

    paths: list[Path]
    fmt: str
    number: bool


def format_records(records: list[dict[str, Any]], fmt: str, number: bool = False) -> tuple[str, str]:
    """The records as text for stdout, and for text format the errors for stderr."""
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in records), ""
    if fmt == "csv":
        buf = io.StringIO()
        fields = NUMBER_FIELDS if number else FIELDS
        csv.DictWriter(buf, fields, extrasaction="ignore", lineterminator="\n").writerows(records)
        return buf.getvalue(), ""
    key = "number" if number else "digit"
    good = "".join(
        f"{r['path']}: {'not a digit, at best ' if r.get('not_a_digit') else ''}{r[key]} ({r['confidence']:.1%})\n"
        for r in records
        if "error" not in r
    )
    return good, "".join(f"{r['path']}: error: {r['error']}\n" for r in records if "error" in r)


def _start_worker() -> None:
    torch.set_num_threads(1)  # the processes share the cores; threads inside each would only contend


def read_chunk(chunk: Chunk) -> tuple[str, str, int]:
    """What a chunk prints to stdout and to stderr, and how many of its files failed."""
    assert _worker is not None, "no model in this process"
    records = (read_numbers if chunk.number else read_files)(_worker, chunk.paths)
    out, errors = format_records(records, chunk.fmt, chunk.number)
    return out, errors, sum("error" in r for r in records)


def read_all(
    paths: list[Path], fmt: str, number: bool, predictor: Predictor, workers: int
) -> Iterator[tuple[str, str, int]]:
    """Each chunk's output, in order, from `workers` processes; memory holds a few chunks, not the run."""
    global _worker
    _worker = predictor
    chunks = [Chunk(paths[i : i + CHUNK], fmt, number) for i in range(0, len(paths), CHUNK)]
    workers = min(workers, len(chunks))
    if workers <= 1:
        _start_worker()
        yield from map(read_chunk, chunks)
        return
    # Forked, as PyTorch's DataLoader forks its workers: each starts at once with the model already
    # loaded (shared copy-on-write), where spawned ones would each import torch again, about 1.5 s.
    # Frozen first, as the gc module's documentation advises before a fork: the workers' collections
    # then never walk, or write to, the 260,000 objects they inherit.
    gc.freeze()
    with multiprocessing.get_context("fork").Pool(workers, _start_worker) as pool:
        yield from pool.imap(read_chunk, chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="image files, or folders to read recursively")
    parser.add_argument(
        "--format",
        choices=["text", "jsonl", "csv"],
        default="text",
        help="one line per file: 'path: digit (confidence)', JSON lines, or CSV (default: text)",
    )
    parser.add_argument("--json", action="store_true", help="the same as --format jsonl (default: off)")
    parser.add_argument(
        "--number", action="store_true", help="read each image as a whole number, digit by digit (default: off)"
    )
    cores = len(os.sched_getaffinity(0))
    parser.add_argument(
        "--workers", type=int, default=cores, help=f"processes reading the files (default: one per core, {cores} here)"
    )
    parser.add_argument(
        "--weights", type=Path, default=DEFAULT_WEIGHTS, help="weights file (default: weights/mnist_mlp.safetensors)"
    )
    args = parser.parse_args()
    fmt = "jsonl" if args.json else args.format
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        predictor = Predictor(args.weights)
    except WeightsError as e:
        sys.exit(f"error: {e}")
    paths = image_paths(args.images)
    if fmt == "csv":
        print(",".join(NUMBER_FIELDS if args.number else FIELDS))
    failed = 0
    # On a terminal only (disable=None): a bar in a log or a pipe would be noise.
    with tqdm(total=len(paths), unit="file", disable=None) as bar:
        for text, errors, bad in read_all(paths, fmt, args.number, predictor, args.workers):
            sys.stdout.write(text)
            sys.stderr.write(errors)
            failed += bad
            bar.update(min(CHUNK, bar.total - bar.n))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
