"""Things that are not digits, for teaching the MLP to say so: outlier exposure (Hendrycks et al., 2019).

train.py pushes the model's answer on these towards uniform, so that its confidence falls on anything that
isn't a digit. They come from sources that are never yardsticks: Fashion-MNIST, and the DejaVu fonts that
report.py measures letters with, are not used here.
  scribbles   random pen strokes that wander and cross
  blobs       filled shapes: smoothed noise cut at a level, ellipses and polygons
  textures    noise of several kinds and grains, stripes, checks and gradients
  overlaps    two MNIST training digits of different classes drawn over one another
  touching    two MNIST training digits side by side, their ink touching: one mark that holds two digits
  glyphs      letters, Greek and symbols in matplotlib's own STIX and Computer Modern fonts
Each is drawn as an upload, dark on light paper or light on dark, and goes through preprocess.preprocess(), so
the model meets them exactly as the service would show them to it.
"""

import functools
import itertools
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.ft2font import FT2Font
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from digits.imaging.errors import NoDigitFound
from digits.imaging.fit import preprocess

KINDS = ("scribbles", "blobs", "textures", "overlaps", "touching", "glyphs")
SIZE = 128  # the side of the page each outlier is drawn on
PARTS = 16  # the pool is drawn in this many parts, shared among the cores
# matplotlib ships these fonts with itself, on every machine; DejaVu, which it also ships, is the yardstick's.
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONT_NAMES = (
    *("STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta"),
    *("cmr10", "cmb10", "cmti10", "cmss10", "cmtt10", "cmmi10"),
)
# Letters and symbols, without those that look like a digit in some font (O, l, S, Z, g, q, b, brackets, !),
# since teaching the model that a 0-shaped O is no digit would teach it that about some zeros too.
GLYPHS = "ACEFHKMNPRTUVWXYacdefhkmnprtuvwxy" + "αβγδεζηθλμξπφψωΓΔΘΛΞΠΣΦΨΩ" + "@#%&*+=?<>~^$€£¥§¶"


@functools.cache
def fonts() -> list[tuple[Path, str]]:
    """Each font, with the glyphs it has: a missing one would be drawn as an empty box."""
    return [
        (path, "".join(c for c in GLYPHS if font.get_char_index(ord(c))))
        for path in (FONT_DIR / f"{name}.ttf" for name in FONT_NAMES)
        for font in [FT2Font(str(path))]
    ]


def _page(rng: np.random.Generator) -> tuple[Image.Image, ImageDraw.ImageDraw, int]:
    """A blank page and the pen's grey; ink goes on dark on light."""
    im = Image.new("L", (SIZE, SIZE), 255)
    return im, ImageDraw.Draw(im), int(rng.integers(0, 80))


def _wander(rng: np.random.Generator, turning: float) -> np.ndarray:
    """The points of a pen wandering with momentum until it has turned through `turning` radians in all."""
    wobble = rng.uniform(0.5, 1.4)
    heading = [rng.uniform(0, 2 * np.pi)]
    while len(heading) < 6 or np.abs(np.diff(heading)).sum() < turning:
        heading.append(heading[-1] + rng.normal(0, wobble))
    angles = np.array(heading)
    steps = rng.uniform(5, 20, len(angles))[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
    return np.cumsum(steps, 0) + rng.uniform(30, 98, 2)


def scribble(rng: np.random.Generator) -> Image.Image:
    """Pen strokes that wander and cross, the first turning through two full turns or more: as much as an 8,
    while a single bend or a straight line would be a 1, a 7 or a 2."""
    im, draw, pen = _page(rng)
    for turning in [4 * np.pi, *rng.uniform(0, 4 * np.pi, rng.integers(0, 3))]:
        points = _wander(rng, turning)
        draw.line([tuple(p) for p in points], fill=pen, width=int(rng.integers(3, 12)), joint="curve")
    return im


def blob(rng: np.random.Generator) -> Image.Image:
    """Filled ink, unlike a digit's strokes: smoothed noise cut at a level, or filled ellipses and polygons."""
    if rng.random() < 0.5:
        field = ndimage.gaussian_filter(rng.normal(size=(SIZE, SIZE)), rng.uniform(4, 16))
        ink = field > np.quantile(field, rng.uniform(0.6, 0.9))
        return Image.fromarray(np.where(ink, rng.integers(0, 80), 255).astype(np.uint8))
    im, draw, pen = _page(rng)
    for _ in range(rng.integers(1, 4)):
        centre = rng.uniform(10, 118, 2)
        if rng.random() < 0.5:
            radii = rng.uniform(8, 40, 2)
            draw.ellipse([*(centre - radii), *(centre + radii)], fill=pen)
        else:
            corners = rng.uniform(-40, 40, (rng.integers(3, 7), 2)) + centre
            draw.polygon([tuple(p) for p in corners], fill=pen)
    return im


def texture(rng: np.random.Generator) -> Image.Image:
    """Noise of several kinds and grains, stripes, checks and gradients, over the whole image."""
    kind = rng.integers(0, 5)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    if kind == 0:
        field = rng.uniform(0, 255, (SIZE, SIZE))
    elif kind == 1:
        field = ndimage.gaussian_filter(rng.normal(size=(SIZE, SIZE)), rng.uniform(0.5, 6))
    elif kind == 2:
        field = (rng.random((SIZE, SIZE)) < rng.uniform(0.02, 0.3)).astype(np.float64)
    elif kind == 3:
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
        field = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        if rng.random() < 0.5:
            field = field * np.sin((xx * np.sin(angle) - yy * np.cos(angle)) * 2 * np.pi / period)
    else:
        field = xx * rng.normal() + yy * rng.normal() + rng.normal(0, rng.uniform(1, 30), (SIZE, SIZE))
    lo, hi = field.min(), field.max()
    return Image.fromarray(((field - lo) / max(hi - lo, 1e-9) * 255).astype(np.uint8))


def overlap(rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray) -> Image.Image:
    """Two training digits of different classes over one another, shifted by up to a third of their width."""
    a = int(rng.integers(len(digits)))
    others = np.flatnonzero(labels != labels[a])
    b = int(others[rng.integers(len(others))])
    shift = rng.integers(-9, 10, 2)
    ink = np.maximum(digits[a], np.roll(digits[b], tuple(shift), (0, 1)))
    return Image.fromarray(255 - ink).resize((SIZE, SIZE), Image.Resampling.BILINEAR)


def touching(rng: np.random.Generator, digits: np.ndarray) -> Image.Image:
    """Two training digits side by side, moved together until their strokes touch: /predict should doubt such
    a mark rather than read one digit, and segment.py, which cuts it where the pieces read best, is helped
    when the whole doesn't read as one digit."""
    a, b = (digits[i][:, digits[i].any(0)] for i in rng.integers(len(digits), size=2))
    apart = _marks(a) + _marks(b)
    for overlap in range(min(a.shape[1], b.shape[1])):
        ink = np.zeros((28, a.shape[1] + b.shape[1] - overlap), dtype=np.uint8)
        ink[:, : a.shape[1]] = a
        ink[:, a.shape[1] - overlap :] = np.maximum(ink[:, a.shape[1] - overlap :], b)
        if _marks(ink) < apart:
            break
    page = np.pad(255 - ink, 8, constant_values=255)
    return Image.fromarray(page).resize((page.shape[1] * 4, page.shape[0] * 4), Image.Resampling.BILINEAR)


def _marks(ink: np.ndarray) -> int:
    """Separate marks of ink, joined only side to side: a corner alone is lost once the page is scaled up."""
    return int(ndimage.label(ink >= 128)[1])


def glyph(rng: np.random.Generator) -> Image.Image:
    """One to three letters or symbols in a font that the measurements don't use, slightly turned."""
    im, draw, pen = _page(rng)
    path, glyphs = fonts()[rng.integers(len(FONT_NAMES))]
    font = ImageFont.truetype(str(path), int(rng.integers(40, 90)))
    text = "".join(rng.choice(list(glyphs), int(rng.choice([1, 1, 1, 2, 3]))))
    draw.text((SIZE / 2, SIZE / 2), text, fill=pen, font=font, anchor="mm")
    return im.rotate(rng.uniform(-15, 15), fillcolor=255)


def pool(digits: np.ndarray, labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n outliers, an equal share of each kind, as the 28×28 inputs the service would make of them (N×28×28 in
    [0,1]). `digits` (N×28×28 uint8, ink bright) and `labels` are training digits, for the overlaps.

    Each outlier is drawn by a generator of its own (the seed, its place, its attempt), so the pool is the same
    on any number of cores, and they share the work: drawn one after another in one process, 3,000 of them took
    6.5 s, most of it in the preprocessing, and 3.5 s on two cores."""
    starts = np.linspace(0, n, PARTS + 1).astype(int)
    # Forked, the workers inherit the digits rather than receive a copy each; they use no torch.
    with multiprocessing.get_context("fork").Pool(
        len(os.sched_getaffinity(0)), _share, (digits, labels, seed)
    ) as workers:
        parts = workers.starmap(_drawn, itertools.pairwise(starts))
    return np.concatenate(parts)


_shared: tuple[np.ndarray, np.ndarray, int]  # pool()'s digits, labels and seed, in each worker


def _share(digits: np.ndarray, labels: np.ndarray, seed: int) -> None:
    global _shared
    _shared = digits, labels, seed


def _drawn(start: int, stop: int) -> np.ndarray:
    """The outliers at places [start, stop) of the pool."""
    digits, labels, seed = _shared
    by_kind: dict[str, Callable[[np.random.Generator], Image.Image]] = {
        "scribbles": scribble,
        "blobs": blob,
        "textures": texture,
        "overlaps": functools.partial(overlap, digits=digits, labels=labels),
        "touching": functools.partial(touching, digits=digits),
        "glyphs": glyph,
    }
    makers = [by_kind[kind] for kind in KINDS]
    out = np.zeros((stop - start, 28, 28), np.float32)
    for i in range(start, stop):
        for attempt in itertools.count():
            rng = np.random.default_rng([seed, i, attempt])
            im = makers[i % len(makers)](rng)
            if rng.random() < 0.3:  # light on dark, as chalk on a board or a dark-mode canvas
                im = Image.eval(im, lambda v: 255 - v)
            try:
                out[i - start] = preprocess(im)
            except NoDigitFound:  # a draw too faint to read is refused already, and teaches nothing
                continue
            break
    return out
