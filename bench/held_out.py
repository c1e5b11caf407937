"""Held-out scenes: what a phone photo of a digit on a sheet often shows beside it, which neither training,
validation nor the realism benchmark draws. It finds what the service has never been shown; nothing is chosen
on the test split.

    python bench/held_out.py                      # 200 training digits a scene
    python bench/held_out.py --digits 500 --split test --only holes,margin

Each scene is a photo as redraw.photo() takes one, 640×480 JPEG, a pen 0.05-0.12 of the digit's height, light
falling off towards the top and bottom, and beside the digit, drawn at random:
  none     nothing: the photo the other scenes are read against
  holes    a sheet's punched holes along one side, the desk dark through them
  pen      a pen lying on the sheet above or below the digit, running off the frame
  margin   squared or lined paper with a notebook's margin, a darker vertical line, left of the digit
  fold     a fold across the sheet, a faint line with a highlight beside it
  dots     dot-grid paper
  box      a form's box printed around the digit, 1-3 px wide
  finger   a fingertip holding the sheet, in from the frame's edge, short of the digit
  circle   a ring drawn by hand round the digit in its pen, clear of its strokes, which the frame may cut
  underline  a line drawn by hand under the digit in its pen
  through  rows of handwriting on the sheet's other side, showing through thin paper, faint and soft
  glare    a lamp's or a window's reflection on glossy paper, a soft patch of light on the ink as on the paper
  highlighter  a highlighter's band across the digit, its edges sharp
  note     the digit on a note or a sheet darker than what it lies on: a coloured sticky note on a white desk
  crumpled  a sheet crumpled and smoothed out: creases across it, each facet between them lit its own way

--pencil draws every digit in pencil instead, and whatever the scene writes in the digit's hand (a ring, a line
under it): graphite's grey, grainy where the paper's tooth takes it, rather than a pen's dark ink.
"""

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import realism
from digits.inference.predictor import Predictor
from digits.training import dataset, redraw

H, W = 480, 640
Grid = tuple[np.ndarray, np.ndarray]  # the row and the column of every pixel


@dataclass(frozen=True)
class Digit:
    """Where the digit lies in the frame: its height and width in pixels, and its middle (row, column); and what
    it is written with."""

    height: float
    width: float
    centre: tuple[float, float]
    pen: float  # the width of the pen it is drawn in
    # A pencil's grain (its share of the paper it covers at each pixel, H×W), or None for a pen.
    grain: np.ndarray | None = None

    def tone(self, rng: np.random.Generator) -> float:
        """How much light what it is written with reflects: a pen's dark ink, or a pencil's grey graphite."""
        return rng.uniform(0.05, 0.25) if self.grain is None else rng.uniform(0.3, 0.6)

    def write(self, sheet: np.ndarray, stroke: np.ndarray, tone: float) -> None:
        """Write `stroke` (the share of each pixel it covers) on the sheet in the digit's hand; a pencil's
        graphite covers its share of the paper's tooth."""
        sheet += (tone - sheet) * (stroke if self.grain is None else stroke * self.grain)


# Each scene changes the sheet's reflectance in place, beside the digit, and may return light that the sheet and
# the ink reflect alike, as a gloss does: added to what they reflect.
Scene = Callable[[np.ndarray, Grid, Digit, np.random.Generator], np.ndarray | None]


def _disk(ys: np.ndarray, xs: np.ndarray, y: float, x: float, r: float) -> np.ndarray:
    return np.clip(r + 0.5 - np.hypot(ys - y, xs - x), 0, 1)


def none(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    pass


def holes(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    x = W / 2 + rng.choice([-1, 1]) * rng.uniform(0.38, 0.46) * W
    r, desk = rng.uniform(0.025, 0.04) * H, rng.uniform(0.1, 0.5)
    for y in (0.2 * H, 0.5 * H, 0.8 * H):
        sheet += (desk - sheet) * _disk(*grid, y, x, r)


def pen(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    ys, xs = grid
    y = digit.centre[0] + rng.choice([-1, 1]) * (digit.height / 2 + rng.uniform(0.1, 0.3) * H)
    turn = rng.uniform(-0.4, 0.4)
    across = (ys - y) * np.cos(turn) - (xs - W / 2) * np.sin(turn)
    along = (xs - W / 2) * np.cos(turn) + (ys - y) * np.sin(turn)
    half = rng.uniform(0.05, 0.15) * digit.height  # a pen's body, 0.1-0.3 of the digit's height across
    body = np.clip(half + 0.5 - np.abs(across), 0, 1) * (along > rng.uniform(-0.2, 0.3) * W)
    sheet += (rng.uniform(0.05, 0.4) - sheet) * body


def margin(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    ys, xs = grid
    step, rule, width = H * rng.uniform(0.05, 0.08), rng.uniform(0.6, 0.8), rng.uniform(1, 2.2)
    sheet[(ys % step) < width] *= rule
    if rng.random() < 0.5:  # squared, as a Russian school notebook is
        sheet[(xs % step) < width] *= rule
    x = digit.centre[1] - digit.width / 2 - rng.uniform(0.2, 1.0) * digit.height
    sheet *= 1 - rng.uniform(0.2, 0.55) * np.clip(0.5 + rng.uniform(0.75, 2) - np.abs(xs - x), 0, 1)


def fold(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    ys, xs = grid
    turn = rng.uniform(0, np.pi)
    off = (xs - W / 2) * np.cos(turn) + (ys - H / 2) * np.sin(turn) - rng.uniform(-0.3, 0.3) * H
    crease = rng.uniform(0.05, 0.2) * np.exp(-((off / rng.uniform(0.7, 2)) ** 2))
    sheet *= 1 - crease + 0.05 * np.exp(-(((off - 2.5) / 1.5) ** 2))


def dots(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    step, r = H * rng.uniform(0.05, 0.08), rng.uniform(0.8, 1.8)
    sheet *= 1 - rng.uniform(0.2, 0.45) * _disk(grid[0] % step, grid[1] % step, step / 2, step / 2, r)


def box(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    ys, xs = grid
    (y, x), pad = digit.centre, rng.uniform(0.1, 0.35) * digit.height
    half_h, half_w = digit.height / 2 + pad, max(digit.width / 2 + pad, 0.3 * digit.height)
    width = rng.uniform(1, 3)
    outside = np.maximum(np.abs(ys - y) - half_h, np.abs(xs - x) - half_w)
    sheet *= 1 - rng.uniform(0.3, 0.8) * np.clip(width / 2 + 0.5 - np.abs(outside), 0, 1)


def finger(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    r = rng.uniform(0.06, 0.12) * H
    axis, sign = divmod(int(rng.integers(4)), 2)  # from the top, the bottom, the left or the right edge
    along, across = grid if axis == 0 else grid[::-1]
    size, half, centre = (H, W)[axis], (digit.height, digit.width)[axis] / 2, digit.centre[axis]
    gap = centre - half if sign == 0 else size - centre - half  # between the frame's edge and the digit
    tip = max(rng.uniform(0.2, 0.8) * gap - r, 0)
    tip, middle = (tip if sign == 0 else size - tip), rng.uniform(0.15, 0.85) * (W, H)[axis]
    past = (along - tip) if sign == 0 else (tip - along)  # beyond the tip, away from the frame's edge
    d = np.hypot(across - middle, np.maximum(past, 0))
    skin = rng.uniform(0.35, 0.7) * (1 - 0.3 * np.minimum(d / r, 1) ** 2)  # darker towards its sides
    sheet += (skin - sheet) * np.clip((r - d) / 3, 0, 1)


def _line(points: np.ndarray, pen: float) -> np.ndarray:
    """A line through points (row, column) no more than a pixel apart, drawn with a round pen, anti-aliased."""
    grid = np.ones((H, W), dtype=bool)
    q = np.rint(points).astype(np.int64)
    grid[q[:, 0].clip(0, H - 1), q[:, 1].clip(0, W - 1)] = False
    return np.clip(pen / 2 + 0.5 - ndimage.distance_transform_edt(grid), 0, 1).astype(np.float32)


def circle(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    (y, x), pad = digit.centre, rng.uniform(0.03, 0.15) * digit.height
    # Drawn by hand round the digit's box, clear of its strokes: a loop that ends past its start, or short of it.
    ry = np.sqrt(2) * (digit.height / 2 + digit.pen) + pad
    rx = np.sqrt(2) * (max(digit.width / 2, digit.height / 4) + digit.pen) + pad
    start, end = rng.uniform(0, 2 * np.pi), 2 * np.pi + rng.uniform(-0.1, 0.5)
    t = np.linspace(0, end, int(end * max(ry, rx)) + 1)
    wobble = 1 + rng.uniform(0, 0.04) * np.sin(2 * t + rng.uniform(0, 2 * np.pi)) + rng.uniform(-0.04, 0.08) * t / end
    turn = rng.uniform(-0.3, 0.3)
    u, v = ry * wobble * np.sin(start + t), rx * wobble * np.cos(start + t)
    points = np.stack([y + u * np.cos(turn) + v * np.sin(turn), x + v * np.cos(turn) - u * np.sin(turn)], 1)
    tone = digit.tone(rng)  # drawn first, as the pen's was
    digit.write(sheet, _line(points, digit.pen * rng.uniform(0.8, 1.25)), tone)


def underline(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    (y, x), span = digit.centre, rng.uniform(0.8, 1.6) * max(digit.width, digit.height / 2)
    below = y + digit.height / 2 + digit.pen + rng.uniform(0.08, 0.3) * digit.height
    t = np.linspace(-0.5, 0.5, int(span) + 1)
    bend, tilt = rng.uniform(-0.05, 0.05) * span, rng.uniform(-0.08, 0.08) * span
    points = np.stack([below + tilt * t + bend * (4 * t**2 - 1), x + rng.uniform(-0.15, 0.15) * span + span * t], 1)
    tone = digit.tone(rng)  # drawn first, as the pen's was
    digit.write(sheet, _line(points, digit.pen * rng.uniform(0.8, 1.25)), tone)


def through(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    small = rng.uniform(0.15, 0.4) * digit.height  # the height of the other side's small letters
    pen, space, wide = small * rng.uniform(0.08, 0.2), small * rng.uniform(2, 3.5), small * rng.uniform(0.6, 1)
    writing = np.zeros((H, W), np.float32)
    for row in np.arange(rng.uniform(0, space), H + small, space):
        # A hand's joined letters, one loop a letter: a prolate cycloid along the row, the loops' heights varying.
        start, end = sorted(rng.uniform(-0.1, 1.1, 2) * W)
        letters = max(int((end - start) / wide), 1)
        t = np.linspace(0, 2 * np.pi * letters, int(letters * 4 * small) + 1)
        # One letter in four tall, an l or a b.
        tall = np.repeat(rng.choice([1, 1, 1, 2.2], letters), len(t) // letters + 1)[: len(t)]
        x = start + (end - start) * t / t[-1] + wide * 0.3 * np.sin(t)
        y = row + rng.uniform(-0.03, 0.03) * (x - W / 2) - small * tall * (1 - np.cos(t)) / 2
        writing = np.maximum(writing, _line(np.stack([y, x], 1), pen))
    sheet *= 1 - rng.uniform(0.04, 0.2) * ndimage.gaussian_filter(writing, rng.uniform(0.5, 2.5))


def glare(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> np.ndarray:
    # A lamp's or a window's reflection on glossy paper or a plastic sleeve: a soft patch of light, the digit's
    # size or larger, anywhere on the sheet, on the ink as on the paper, up to washing both out.
    ys, xs = grid
    y, x = rng.uniform(0.1, 0.9) * H, rng.uniform(0.1, 0.9) * W
    ry, rx = rng.uniform(0.5, 1.5, 2) * digit.height / 2
    return rng.uniform(0.2, 0.8) * np.exp(-((((ys - y) / ry) ** 2 + ((xs - x) / rx) ** 2) ** rng.uniform(1, 3)))


def highlighter(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    # A highlighter's band drawn across the digit, as over a line of notes: as wide as a fifth to most of the
    # digit's height, its ends anywhere, a yellow to a pink one (10-30% darker in luminance), its edges sharp.
    ys, xs = grid
    turn = rng.uniform(-0.15, 0.15)
    off = (ys - digit.centre[0] - rng.uniform(-0.2, 0.2) * digit.height) * np.cos(turn) - (xs - W / 2) * np.sin(turn)
    along = (xs - W / 2) * np.cos(turn)
    start, end = rng.uniform(-0.5, -0.1) * W, rng.uniform(0.1, 0.5) * W
    half = rng.uniform(0.2, 0.45) * digit.height
    band = np.clip(half + 0.5 - np.abs(off), 0, 1) * np.clip(along - start, 0, 1) * np.clip(end - along, 0, 1)
    sheet *= 1 - rng.uniform(0.1, 0.3) * band


def note(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    # A coloured sticky note, or a grey sheet, on a surface lighter than it: a white desk, printer paper beneath.
    # The note holds the digit with room, turned up to 30°, and reflects 0.55-0.9 of the paper's light (a pink,
    # blue or green note in luminance); the surface is as light as the paper or lighter, with a faint mottle.
    ys, xs = grid
    turn = rng.uniform(-np.pi / 6, np.pi / 6)
    (y, x) = np.asarray(digit.centre) + rng.uniform(-0.15, 0.15, 2) * digit.height
    half = rng.uniform(0.85, 1.8, 2) * digit.height
    u = (ys - y) * np.cos(turn) + (xs - x) * np.sin(turn)
    v = (xs - x) * np.cos(turn) - (ys - y) * np.sin(turn)
    inside = np.clip(0.5 + np.minimum(half[0] - np.abs(u), half[1] - np.abs(v)), 0, 1)
    surface = rng.uniform(0.9, 1.0) + ndimage.gaussian_filter(rng.normal(0, 0.1, sheet.shape), rng.uniform(6, 20))
    sheet[:] = inside * sheet * rng.uniform(0.55, 0.9) + (1 - inside) * np.minimum(surface, 1)


def crumpled(sheet: np.ndarray, grid: Grid, digit: Digit, rng: np.random.Generator) -> None:
    # A sheet crumpled and smoothed out again: 4-11 creases straight across it, each a faint line, and each
    # facet between them tilted to the light its own way, a step of up to 5% at every crease, sharp or soft.
    ys, xs = grid
    light = np.zeros_like(sheet)
    for _ in range(int(rng.integers(4, 12))):
        turn = rng.uniform(0, np.pi)
        off = (xs - W / 2) * np.cos(turn) + (ys - H / 2) * np.sin(turn) - rng.uniform(-0.5, 0.5) * H
        light += rng.uniform(-0.05, 0.05) * np.tanh(off / rng.uniform(0.5, 3))
        light -= rng.uniform(0, 0.1) * np.exp(-((off / rng.uniform(0.6, 1.5)) ** 2))
    sheet *= np.exp(light - light.max())


SCENES: dict[str, Scene] = {
    "none": none,
    "holes": holes,
    "pen": pen,
    "margin": margin,
    "fold": fold,
    "dots": dots,
    "box": box,
    "finger": finger,
    "circle": circle,
    "underline": underline,
    "through": through,
    "glare": glare,
    "highlighter": highlighter,
    "note": note,
    "crumpled": crumpled,
}


def _grain(rng: np.random.Generator) -> np.ndarray:
    """A pencil's grain: the share of the paper's tooth that its graphite covers at each pixel, half to nine
    tenths on average, varying at the scale of a pixel or two."""
    tooth = ndimage.gaussian_filter(rng.normal(0, 0.5, (H, W)), rng.uniform(0.5, 1.0))
    return np.clip(rng.uniform(0.5, 0.9) + tooth, 0, 1).astype(np.float32)


def photo(skel: redraw.Skeleton, rng: np.random.Generator, scene: Scene, pencil: bool = False) -> bytes:
    """A photo of the digit on a sheet with the scene beside it, in pen or in pencil."""
    height = rng.uniform(0.3, 0.6) * H
    centre = (H / 2 + rng.uniform(-0.15, 0.15) * H, W / 2 + rng.uniform(-0.2, 0.2) * W)
    if pencil:  # a pencil's point is finer than most pens
        digit = Digit(height, skel.aspect * height, centre, rng.uniform(0.03, 0.08) * height, _grain(rng))
    else:
        digit = Digit(height, skel.aspect * height, centre, rng.uniform(0.05, 0.12) * height)
    ink = redraw.draw(skel, (H, W), height, digit.pen, digit.centre)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    grid = (ys, xs)
    sheet = np.full((H, W), rng.uniform(0.8, 0.95), np.float32)
    gloss = scene(sheet, grid, digit, rng)
    digit.write(sheet, ink, digit.tone(rng))
    lighting = 1 - rng.uniform(0.4, 1.0) * (ys / H - 0.5) ** 2
    seen = sheet * lighting + (0 if gloss is None else gloss)
    return redraw.jpeg(seen + rng.normal(0, 0.015, (H, W)), int(rng.integers(70, 92)))


def rates(
    predictor: Predictor, digits: np.ndarray, labels: np.ndarray, scene: str, seed: int, pencil: bool = False
) -> dict[str, float]:
    """Each of realism.COLUMNS's rates over photos of the digits in a scene, drawn from `seed`."""
    rng = np.random.default_rng(seed)
    uploads = [photo(redraw.skeleton(d), rng, SCENES[scene], pencil) for d in digits]
    return dict(zip(realism.COLUMNS, realism.answers(predictor, uploads, labels).mean(0), strict=True))


def main(args: argparse.Namespace) -> None:
    images, targets = dataset.load(train=args.split == "train")[:2]
    pick = np.random.default_rng(args.seed).permutation(len(images))[: args.digits]
    digits, labels, predictor = images.numpy()[pick], targets.numpy()[pick], Predictor()
    scenes = args.only.split(",") if args.only else SCENES
    rows = {name: rates(predictor, digits, labels, name, args.seed, args.pencil) for name in scenes}
    hand = "in pencil" if args.pencil else "in pen"
    print(f"{args.digits} {args.split} digits a scene {hand}, seed {args.seed}\n\n{realism.table(rows)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits", type=int, default=200, help="digits a scene (default 200)")
    parser.add_argument("--split", choices=("train", "test"), default="train", help="whose digits (default train)")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--only", help="scenes to draw, comma-separated (default all)")
    parser.add_argument("--pencil", action="store_true", help="every digit in pencil (default: in pen)")
    main(parser.parse_args())
