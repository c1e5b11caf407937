"""MNIST digits redrawn the way people's digits arrive: other pens, the page's canvas, photos of paper.

    python bench/realism.py                # the benchmark: test digits, one row per condition
    python bench/realism.py --digits 300   # a quicker, noisier look

MNIST has one pen (about 0.12 of the digit's height) and one kind of paper. Each digit is thinned to its
skeleton (scikit-image) and drawn again with a round pen along it, so a digit keeps its writer's shape and
changes only what the condition changes:
  pen      dark ink on white paper, pens from 0.03 (a ballpoint at arm's length) to 0.3 (a marker)
  page     the upload page's own canvas and pen (static/app.js), the hand moving over 10% to 90% of the pad
  photo    a photographed sheet: a vignette, a soft or hard shadow over a corner, a gradient of light or a dim
           room, on plain, lined or squared paper or a sheet on a desk, with sensor noise and JPEG compression;
           and "anyhow", each of these at random, in colour, the digit small or close up in any pen, the phone
           tilted, blurred, at any JPEG quality
  scan     a digit captured 8 to 16 px tall, as a cheap scanner or a thumbnail holds it, and blown up again
  slant    slanted and rotated digits
train.py validates on training digits drawn this way (validation_uploads); the benchmark measures on test
digits, which nothing is ever chosen on.
"""

import colorsys
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.morphology import skeletonize
from skimage.transform import ProjectiveTransform, warp

from digits.imaging.decode import decode
from digits.imaging.errors import NoDigitFound
from digits.imaging.fit import fit_and_centre, preprocess
from digits.imaging.png import encode

UP = 4  # skeletons are taken at 4× MNIST's resolution, 112×112, where a stroke is about 10 px wide
# The page's canvas, and its pen (static/app.js): a share of the drawing's longer side, from PAD / 140 to PAD / 14.
PAD, PAD_PEN_SHARE = 560, 0.12
PAD_PENS = (PAD / 140, PAD / 14)
PENS = (0.03, 0.05, 0.08, 0.12, 0.18, 0.25, 0.3)
# Training's pens, log-uniform: to 0.5 of the height, which a digit drawn small with the page's fixed pen reached.
TRAIN_PENS = (0.03, 0.5)
TRAIN_HEIGHT = 40  # px: twice the 20 px the fit makes of it, so the pen's edge is anti-aliased as a photo's
PAD_SHARES = (0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 0.9)  # 0.9 and the pen's width fill the pad
LIGHTS = ("vignette", "shadow", "hard shadow", "gradient", "dim")
PAPERS = ("plain", "lined", "squared", "on a desk")
# A photo's digit: its height a share of the frame's, its pen a share of that. "anyhow" draws them more widely,
# the pen log-uniform: from a ballpoint held far off to a marker close up, most of the frame's height.
PHOTO_HEIGHTS, PHOTO_PENS = (0.3, 0.6), (0.05, 0.12)
ANYHOW_HEIGHTS, ANYHOW_PENS = (0.2, 0.7), (0.03, 0.2)
TILT = 0.08  # "anyhow" moves each corner of the frame in by up to this share of its sides
SCANS = ((8, 11), (12, 16))  # px: the digit's height as captured, a thumbnail's to a cheap scanner's


@dataclass(frozen=True)
class Skeleton:
    """A digit's centre line: points in 112×112 coordinates (row, column), dense enough to draw through."""

    points: np.ndarray  # N×2 float
    top: float
    bottom: float
    left: float
    right: float

    @property
    def height(self) -> float:
        return max(self.bottom - self.top, 1.0)

    @property
    def aspect(self) -> float:
        """Its width over its height."""
        return (self.right - self.left) / self.height


def skeleton(digit: np.ndarray) -> Skeleton:
    """The centre line of a 28×28 MNIST digit (uint8, ink bright), with every link between neighbouring
    skeleton pixels filled with points a tenth of a pixel apart, so that it can be drawn at any scale."""
    big = np.asarray(Image.fromarray(digit).resize((28 * UP, 28 * UP), Image.Resampling.BILINEAR)) > 100
    skel = skeletonize(big)
    ys, xs = np.nonzero(skel)
    points = [np.stack([ys, xs], 1).astype(np.float32)]
    t = np.linspace(0, 1, 11, dtype=np.float32)[1:-1, None]
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = skel[: skel.shape[0] - dy, max(0, -dx) : skel.shape[1] - max(0, dx)]
        b = skel[dy:, max(0, dx) : skel.shape[1] - max(0, -dx) or None]
        ys, xs = np.nonzero(a & b)
        start = np.stack([ys, xs + max(0, -dx)], 1).astype(np.float32)
        points.append((start[:, None] + t * np.array([dy, dx], dtype=np.float32)).reshape(-1, 2))
    p = np.concatenate(points)
    if len(p) == 0:  # a digit with no pixel over the threshold: a dot where its ink is
        ys, xs = np.nonzero(big) if big.any() else (np.array([56]), np.array([56]))
        p = np.array([[ys.mean(), xs.mean()]], dtype=np.float32)
    return Skeleton(p, float(p[:, 0].min()), float(p[:, 0].max()), float(p[:, 1].min()), float(p[:, 1].max()))


def draw(
    skel: Skeleton,
    size: tuple[int, int],
    height: float,
    pen: float,
    centre: tuple[float, float],
    transform: np.ndarray | None = None,
) -> np.ndarray:
    """The digit's ink (1 is full ink) on an h×w page, `height` px tall along its skeleton, drawn with a round
    pen `pen` px wide, its skeleton's middle at `centre` (row, column), anti-aliased. `transform` is a 2×2
    matrix applied to the digit about its middle (rotation, slant)."""
    h, w = size
    p = (skel.points - [(skel.top + skel.bottom) / 2, (skel.left + skel.right) / 2]) * (height / skel.height)
    if transform is not None:
        p = p @ transform.T
    p += centre
    # Distances to the nearest point of the line; the pen covers what is within its radius, with a soft edge
    # a pixel wide. A thin pen is drawn at twice the resolution and averaged back down, where a pixel more or
    # less of a thin line shows; a wide one is not, since the distance transform costs by the pixel.
    ss = 2 if pen < 6 else 1
    q = np.rint(p * ss).astype(np.int64)
    q = q[(q[:, 0] >= 0) & (q[:, 0] < h * ss) & (q[:, 1] >= 0) & (q[:, 1] < w * ss)]
    ink = np.zeros((h, w), dtype=np.float32)
    if len(q) == 0:  # the line lies outside the page
        return ink
    # Only the box within the pen's reach of the line can take ink, and every point of the line is in it, so the
    # distances there are the same as over the whole page: a digit 100 px tall on a photo's 480×640 frame drew
    # in 0.7 ms with a 12 px pen and 1.9 ms with a 4 px one, where the whole frame took 8 and 62 ms.
    reach = pen / 2 + 0.5
    top, left = np.maximum(np.floor((q.min(0) / ss) - reach).astype(int) - 1, 0)
    bottom, right = np.minimum(np.ceil((q.max(0) / ss) + reach).astype(int) + 2, (h, w))
    grid = np.ones(((bottom - top) * ss, (right - left) * ss), dtype=bool)
    grid[q[:, 0] - top * ss, q[:, 1] - left * ss] = False
    dist = ndimage.distance_transform_edt(grid) / ss
    box = np.clip(reach - dist, 0, 1).astype(np.float32)
    ink[top:bottom, left:right] = box.reshape(bottom - top, ss, right - left, ss).mean(axis=(1, 3))
    return ink


def _pixels(gray: np.ndarray) -> np.ndarray:
    """A grey image in [0,1] as 8-bit pixels."""
    return np.clip(np.rint(gray * 255), 0, 255).astype(np.uint8)


def _png(gray: np.ndarray) -> bytes:
    return encode(_pixels(gray))


def jpeg(gray: np.ndarray, quality: int) -> bytes:
    return encode(_pixels(gray), "JPEG", quality=quality)


def with_pen(skel: Skeleton, rng: np.random.Generator, pen: float) -> bytes:
    """Dark ink on white paper, the pen `pen` of the digit's height, a PNG as from a scanner or a crop."""
    height = rng.uniform(60, 140)
    margin = height * (0.25 + pen)
    h, w = int(height + 2 * margin), int(height * 0.8 + 2 * margin)
    ink = draw(skel, (h, w), height, pen * height, (h / 2 + rng.uniform(-0.1, 0.1) * margin, w / 2))
    paper, dark = rng.uniform(0.85, 1.0), rng.uniform(0.0, 0.25)
    return _png(paper + (dark - paper) * ink)


def on_page(skel: Skeleton, rng: np.random.Generator, share: float) -> bytes:
    """As the upload page sends a drawing: the 560×560 white canvas, the hand moving over `share` of the pad's
    height, or of its width for a digit wider than tall (the ink is a pen's width more), anywhere on the pad, in
    #111 with the page's pen for its size. Nobody draws past the pad's edge: a 0 drawn over 90% of the pad's
    height would have run off its sides."""
    height = share * PAD / max(1.0, skel.aspect)
    width = skel.aspect * height
    pen = float(np.clip(PAD_PEN_SHARE * max(height, width), *PAD_PENS))
    # Anywhere its ink fits, the pen's soft edge and the pixel its line is rounded to included.
    half_h, half_w = (height + pen) / 2 + 1, (width + pen) / 2 + 1
    centre = (rng.uniform(half_h, PAD - half_h), rng.uniform(half_w, PAD - half_w))
    ink = draw(skel, (PAD, PAD), height, pen, centre)
    return _png(1 + (0x11 / 255 - 1) * ink)


def photo(skel: Skeleton, rng: np.random.Generator, light: str, paper: str, anyhow: bool = False) -> bytes:
    """A phone photo of a digit on paper, 640×480, JPEG: uneven light of the kind `light` (LIGHTS, or "even"),
    ruled as `paper`. The digit's place and pen depend on the generator's state only, not on `light`. `anyhow`
    draws what the conditions leave grey and straight at random too (_anyhow): the colours of the ink, the
    paper and the light, the phone's tilt, a blur, and the JPEG's quality; and the digit's size and pen, and the
    sensor's noise, more widely."""
    h, w = 480, 640
    if anyhow:
        height = rng.uniform(*ANYHOW_HEIGHTS) * h
        pen = np.exp(rng.uniform(*np.log(ANYHOW_PENS))) * height
    else:
        height = rng.uniform(*PHOTO_HEIGHTS) * h
        pen = rng.uniform(*PHOTO_PENS) * height
    centre = (h / 2 + rng.uniform(-0.15, 0.15) * h, w / 2 + rng.uniform(-0.25, 0.25) * w)
    if anyhow:  # inside what the tilted frame sees (_anyhow), however large: close up, it has less room to move
        frame = np.array([h, w]) * (1 - 2 * TILT)
        room = np.maximum((frame - [height, skel.aspect * height] - pen) / 2, 0)
        centre = tuple(np.array([h, w]) / 2 + np.clip(np.subtract(centre, [h / 2, w / 2]), -room, room))
    ink = draw(skel, (h, w), height, pen, centre)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ys, xs = ys / h - 0.5, xs / w - 0.5
    if light == "vignette":  # darker towards every corner
        lighting = 1 - rng.uniform(0.4, 0.7) * (ys**2 + xs**2) / 0.5
    elif light in ("shadow", "hard shadow"):  # over one corner, as from the phone or a hand, soft or sharp
        sy, sx = rng.choice([-1, 1], size=2)
        # A hard edge is a pixel or two wide at this size (0.002 to 0.006 of the frame), as a phone's own shadow
        # in daylight casts it; a soft one fades over a tenth of the frame. Its place and depth vary alike.
        reach = rng.uniform(0.25, 0.45)
        width = rng.uniform(0.03, 0.1) if light == "shadow" else rng.uniform(0.002, 0.006)
        edge = np.clip((sy * ys + sx * xs - reach) / width, -60, 60)
        lighting = 1 - rng.uniform(0.4, 0.6) / (1 + np.exp(-edge))
    elif light == "dim":  # a dim room: the sheet grey, the ink faint against it, the sensor's noise up
        lighting = np.full_like(xs, rng.uniform(0.3, 0.55))
    elif light == "even":  # for comparison: the same photo, evenly lit
        lighting = np.ones_like(xs)
    else:  # light falling off across the sheet
        angle = rng.uniform(0, 2 * np.pi)
        lighting = 1 - rng.uniform(0.3, 0.5) * (0.5 + np.cos(angle) * xs + np.sin(angle) * ys)
    reflect = np.full((h, w), rng.uniform(0.8, 0.95), dtype=np.float32)
    ruling = PAPERS[rng.integers(3)] if paper == "on a desk" else paper  # a sheet on a desk: any of the three
    if ruling != "plain":  # pale blue-grey rules, 1-2 px, every 6-8% of the height
        step, line = h * rng.uniform(0.06, 0.08), rng.uniform(0.6, 0.8)
        width = rng.uniform(1, 2.2)
        rows = (ys * h) % step < width
        reflect[rows] *= line
        if ruling == "squared":
            reflect[(xs * w) % step < width] *= line
    if not anyhow:  # which inks the digit in a colour of its own (_anyhow)
        reflect += (rng.uniform(0.05, 0.25) - reflect) * ink
    if paper == "on a desk":
        reflect = _on_desk(reflect, height, centre, rng)
    if anyhow:
        return _anyhow(reflect, ink, lighting, rng, _sensor(light, rng) * rng.uniform(0.5, 1.5))
    noise = _sensor(light, rng)
    gray = reflect * lighting + rng.normal(0, noise, (h, w))
    return jpeg(gray, int(rng.integers(70, 92)))


def _sensor(light: str, rng: np.random.Generator) -> float:
    """The sensor's noise: up in a dim room."""
    return rng.uniform(0.03, 0.05) if light == "dim" else 0.015


def _anyhow(paper: np.ndarray, ink: np.ndarray, lighting: np.ndarray, rng: np.random.Generator, noise: float) -> bytes:
    """photo()'s sheet in colour, as a phone takes it: an ink of any hue, dark to mid (a black, blue, red or
    green pen, or a pencil's grey), on paper of any pale tint (white, cream, a sticky note), under light that is
    warm or cool; seen with the phone tilted up to about 20° (the frame's corners moved in by up to 8% of its
    sides), out of focus or shaken (a Gaussian blur up to 1.5 px), and saved at any JPEG quality from 40."""
    h, w = paper.shape
    pen = np.asarray(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(), rng.uniform(0.05, 0.5)), np.float32)
    tint = np.asarray(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.45), 1), np.float32)
    light = rng.uniform(0.85, 1, 3).astype(np.float32)
    sheet = paper[..., None] * tint
    sheet += (pen - sheet) * ink[..., None]
    rgb = sheet * (lighting[..., None] * light / light.max())
    # Each corner of the frame sees a point of the sheet moved in by up to TILT of each side, and a homography
    # maps every pixel of the frame onto the sheet.
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    seen = corners + rng.uniform(0, TILT, (4, 2)) * [w, h] * [[1, 1], [-1, 1], [-1, -1], [1, -1]]
    tilted = warp(rgb, ProjectiveTransform.from_estimate(corners, seen), order=1, mode="edge")
    blurred = ndimage.gaussian_filter(tilted, (*[rng.uniform(0, 1.5)] * 2, 0))
    return jpeg(blurred + rng.normal(0, noise, blurred.shape), int(rng.integers(40, 96)))


def _on_desk(reflect: np.ndarray, height: float, centre: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """The sheet filling only part of the frame, the desk around it: a sticky note, or a sheet turned up to 30°
    with the desk at its sides. The sheet holds the digit (`height` px tall about `centre`) with room; the desk
    is darker or lighter wood or plastic, with a grain."""
    h, w = reflect.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(-np.pi / 6, np.pi / 6)
    middle = np.asarray(centre) + rng.uniform(-0.15, 0.15, 2) * height
    half = rng.uniform(0.85, 1.8, 2) * height  # from a note just round the digit to a sheet beyond the frame
    u = (ys - middle[0]) * np.cos(angle) + (xs - middle[1]) * np.sin(angle)
    v = (xs - middle[1]) * np.cos(angle) - (ys - middle[0]) * np.sin(angle)
    sheet = np.clip(0.5 + np.minimum(half[0] - np.abs(u), half[1] - np.abs(v)), 0, 1)  # its edge anti-aliased
    grain = rng.uniform(0, np.pi)
    along = xs * np.cos(grain) + ys * np.sin(grain)
    desk = (
        rng.choice([rng.uniform(0.1, 0.45), rng.uniform(0.6, 0.75)])
        + rng.uniform(0.02, 0.08) * np.sin(along / rng.uniform(3, 12) + 2 * np.sin(along / rng.uniform(40, 120)))
        + ndimage.gaussian_filter(rng.normal(0, 0.3, (h, w)), rng.uniform(6, 20))
    )
    return (sheet * reflect + (1 - sheet) * desk).astype(np.float32)


def anyhow(skel: Skeleton, rng: np.random.Generator) -> bytes:
    """A phone photo with every condition drawn at random: any light of LIGHTS or none, any paper of PAPERS, and
    the colours, tilt, blur, JPEG quality, size, pen and noise of photo(anyhow=True)."""
    light = (*LIGHTS, "even")[rng.integers(len(LIGHTS) + 1)]
    return photo(skel, rng, light, PAPERS[rng.integers(len(PAPERS))], anyhow=True)


def scanned(skel: Skeleton, rng: np.random.Generator, low: int, high: int) -> bytes:
    """A digit captured `low` to `high` px tall, each pixel the average of what it covers, then blown up 3-8×
    as a viewer or an upload tool does (nearest, bilinear or bicubic), a PNG or a JPEG."""
    height = rng.uniform(low, high + 1)
    pen = rng.uniform(0.06, 0.15) * height
    margin = height * 0.4
    h, w = int(np.ceil(height + 2 * margin)), int(np.ceil(height * 0.8 + 2 * margin))
    ink = draw(skel, (h, w), height, pen, (h / 2 + rng.uniform(-0.1, 0.1) * margin, w / 2))
    paper, dark = rng.uniform(0.8, 1.0), rng.uniform(0.0, 0.3)
    small = Image.fromarray(_pixels(paper + (dark - paper) * ink))
    scale = rng.uniform(3, 8)
    resample = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)[rng.integers(3)]
    big = np.asarray(small.resize((round(w * scale), round(h * scale)), resample), dtype=np.float32) / 255
    return _png(big) if rng.random() < 0.5 else jpeg(big, int(rng.integers(60, 92)))


def slanted(skel: Skeleton, rng: np.random.Generator, kind: str) -> bytes:
    """A digit slanted (shear up to ±0.4) or rotated (±10-20° or ±20-30°), MNIST's pen, on white paper."""
    if kind == "slant":
        s = rng.uniform(0.2, 0.4) * rng.choice([-1, 1])
        m = np.array([[1, 0], [-s, 1]], dtype=np.float32)  # rows stay, columns lean with the height
    else:
        lo, hi = (10, 20) if kind == "rotate 10-20°" else (20, 30)
        a = np.deg2rad(rng.uniform(lo, hi) * rng.choice([-1, 1]))
        m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], dtype=np.float32)
    height = rng.uniform(60, 140)
    size = int(height * 1.8)
    ink = draw(skel, (size, size), height, 0.12 * height, (size / 2, size / 2), m)
    return _png(1 - 0.9 * ink)


Render = Callable[[Skeleton, np.random.Generator], bytes]


def conditions() -> dict[str, tuple[str, Render]]:
    """Every condition the benchmark measures: its name, its group, and how it draws a digit."""
    out: dict[str, tuple[str, Render]] = {}
    for pen in PENS:
        out[f"pen {pen:.2f}"] = ("pen", functools.partial(with_pen, pen=pen))
    for share in PAD_SHARES:
        out[f"page {share:.0%}"] = ("page", functools.partial(on_page, share=share))
    for light in LIGHTS:
        for paper in PAPERS:
            out[f"{light}, {paper}"] = ("photo", functools.partial(photo, light=light, paper=paper))
    out["photo, anyhow"] = ("photo", anyhow)
    for low, high in SCANS:
        out[f"scan {low}-{high} px"] = ("scan", functools.partial(scanned, low=low, high=high))
    for kind in ("slant", "rotate 10-20°", "rotate 20-30°"):
        out[kind] = ("slant", functools.partial(slanted, kind=kind))
    return out


# What validation draws: pens and the page through the range users reach, photos and small scans. Not the
# rotations: digits turned 30° are a stress test for the benchmark, not a target to tune towards.
VALIDATION = ("pen", "page", "photo", "scan")
# What the benchmark draws that the shipped weights' training never validated on: validation chose their
# checkpoint as well as their threshold. The weights trained for one pen kept it so, to be chosen as the weights
# before them were; the next recipe should validate on these too (issue 32).
# With these, the sheet on a desk that the service doesn't read yet among them, the threshold would be 0.126.
NEWER_LIGHTS, NEWER_PAPERS = ("hard shadow", "dim"), ("on a desk",)
NOT_VALIDATED = (
    "page 10%",
    "photo, anyhow",
    *(f"scan {low}-{high} px" for low, high in SCANS),
    *(f"{light}, {paper}" for light in LIGHTS for paper in PAPERS if light in NEWER_LIGHTS or paper in NEWER_PAPERS),
)


def validation_uploads(digits: np.ndarray, seed: int) -> list[bytes]:
    """Each digit drawn once, as uploads of the validation groups' conditions in turn (page from 15%)."""
    rng = np.random.default_rng(seed)
    chosen = [
        render for name, (group, render) in conditions().items() if group in VALIDATION and name not in NOT_VALIDATED
    ]
    return [chosen[i % len(chosen)](skeleton(d), rng) for i, d in enumerate(digits)]


def redrawn(digits: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each digit (N×28×28 uint8) drawn again with a pen from TRAIN_PENS, and fitted as an upload is
    (preprocess.fit_and_centre(), which thickens the thinnest): N×28×28 float32 in [0,1], and the labels."""
    rng = np.random.default_rng(seed)
    low, high = TRAIN_PENS
    pens = np.exp(rng.uniform(np.log(low), np.log(high), len(digits))) * TRAIN_HEIGHT
    out = np.empty((len(digits), 28, 28), dtype=np.float32)
    for i, (digit, pen) in enumerate(zip(digits, pens, strict=True)):
        skel = skeleton(digit)
        width = skel.aspect * TRAIN_HEIGHT
        size = (int(TRAIN_HEIGHT + pen) + 4, int(width + pen) + 4)
        out[i] = fit_and_centre(draw(skel, size, TRAIN_HEIGHT, pen, (size[0] / 2, size[1] / 2)))
    return out, labels


def validation_inputs(digits: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """validation_uploads() as the service's 28×28 inputs, with their labels; an upload in which no digit is
    found gives none."""
    inputs, kept = [], []
    for upload, label in zip(validation_uploads(digits, seed), labels, strict=True):
        try:
            inputs.append(preprocess(decode(upload)))
        except NoDigitFound:
            continue
        kept.append(label)
    return np.stack(inputs), np.array(kept, dtype=labels.dtype)
