"""Reading whole numbers: the ink segmented into digits, left to right, each read like a single digit.

    python predict.py --number meter.jpg

preprocess.ink_groups() finds the digits that stand apart. A group wider than a digit may be touching
digits. The candidate cuts through it are the straight columns where its ink is thinnest, and paths from
top to bottom that cross as little ink as they can, each wandering near one column, so that a cut can slip
between neighbours that overlap or lean. A small dynamic program weighs runs of pieces in two steps. The
ink the cuts cross, with what the classifier makes of each piece and its width, decides how many digits
the group holds; then the classifier alone decides where they part, since two round digits touching
along a stretch (two 0s) join through more ink than a cut across one of them. Every piece goes through
preprocess.fit_and_centre(), the same MNIST-style normalization as a single digit.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from digits.i18n.message import N_
from digits.imaging.decode import FULL_SIZE, decode
from digits.imaging.errors import ImageError
from digits.imaging.fit import fit_and_centre
from digits.imaging.groups import Group, ink_groups
from digits.imaging.ink import ink_map
from digits.inference.predictor import Prediction, Predictor

# Lengths are in units of the group's height.
WIDE = 0.4  # a group wider than this may be several touching digits (two 1s side by side can be 0.4)
# A cut piece's width: a 1 can be very narrow. Up to 1.3 read every validation number as up to 1.6 did, in
# less time: wider pieces pay for their width, and there they were never chosen.
NARROWEST, WIDEST = 0.12, 1.3
SHORTEST = 0.4  # a cut piece shorter than this is a stroke's tip, not a digit
CUTS = 12  # candidate cuts of each kind tried in one group: paths, and straight columns
STEP = 0.08  # candidate paths start this far apart, and no two kept are closer on average
BAND = 0.15  # a path wanders at most this far from where it starts
SIDESTEP = 0.05  # what a path pays for each pixel it steps sideways, against 1 for a pixel of full ink
# A piece scores log(confidence), less WIDER for each unit its width passes its height. 1% of MNIST's digits
# are wider than 1.43 times their height, while two touching digits are about 1.6; the height is taken as no
# more than the median group's, since two digits at different heights make one taller group. Counting the
# digits, each piece also pays CUT times the ink its right-hand cut crosses: a single digit is split only
# through its strokes, while touching digits part where little ink joins them. All chosen on numbers made
# of MNIST training digits.
WIDER, CUT = 3.0, 5.0
# A piece that the classifier calls "not a digit" pays NOT_ONE more: it learnt to doubt two digits squeezed into
# one box, and a 1 that touches its neighbour made a group read as one digit (41 as a 4, 61 as a 6). On 500
# numbers of training digits in each style (paper, photo, shadow, canvas), touching read exactly 85.4-85.8%
# rather than 84.4-85.0%, and apart the same (92.2-95.2%); 1 read the same, 2 read fewer apart in every style.
# Of 1,000 on paper (half apart), 97 were misread rather than 102; the count's doubt (DOUBT) left 53 of them
# unflagged rather than 52, and flagged 59 read right rather than 68.
NOT_ONE = 0.5
DOUBT = 0.3  # a group whose best count of digits scored less than this ahead of the next best: a doubtful call
# A group no wider than ALONE whose whole reads with a score of log(SURE) or more (confidence SURE, less any
# width charge) is one digit and is not cut up: on the validation numbers, cutting such groups never changed
# a reading, and it took most of the time.
ALONE, SURE = 1.0, 0.9
MAX_DIGITS = 32  # the most digits read in one image, by default


class TooManyDigits(ImageError):
    pass


@dataclass
class Digit:
    prediction: Prediction
    box: tuple[int, int, int, int]  # x, y, width, height in the uploaded image's pixels


@dataclass
class Reading:
    digits: list[Digit]
    split_doubtful: bool  # a group was nearly as likely one digit as several

    @property
    def number(self) -> str:
        return "".join(str(d.prediction.digit) for d in self.digits)

    @property
    def confidence(self) -> float:
        return math.prod(d.prediction.confidence for d in self.digits)

    @property
    def uncertain(self) -> bool:
        return self.split_doubtful or any(d.prediction.uncertain for d in self.digits)


def _inner(h: int, w: int) -> tuple[int, int]:
    """The columns a cut may start from in a group: none nearer either edge than the narrowest piece."""
    edge = max(1, round(NARROWEST * h))
    return edge, w - edge


def _paths(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest paths from top to bottom through a group, one column per row each, and the ink each
    crosses. Each is kept near the column it starts from, so that a cut can slip between strokes that overlap.
    They are found at full resolution: on a group shrunk to 32 rows, two touching 0s drawn on the page were
    cut through the right one's side."""
    h, w = ink.shape
    lo, hi = _inner(h, w)
    starts = np.arange(lo, hi, max(1, round(STEP * h)))
    if starts.size == 0:
        return np.zeros((0, h), np.int64), np.zeros(0)
    outside = np.abs(np.arange(w)[None, :] - starts[:, None]) > BAND * h  # (paths, columns)
    inf = float(h * w)
    cost = np.where(outside, inf, ink[0])
    moves = np.zeros((h, starts.size, w), np.int8)  # the step each path took into a pixel: -1, 0 or +1
    for r in range(1, h):
        best = cost.copy()
        for step, came in ((-1, np.s_[:, 1:]), (1, np.s_[:, :-1])):
            # From the neighbour on the left (step -1) or on the right (step +1), one column over.
            other = np.full_like(cost, inf)
            other[came] = cost[:, :-1] + SIDESTEP if step == -1 else cost[:, 1:] + SIDESTEP
            better = other < best
            best[better], moves[r][better] = other[better], step
        cost = np.where(outside, inf, best + ink[r])
    end = cost.argmin(1)
    paths = np.zeros((starts.size, h), np.int64)
    paths[:, -1] = end
    for r in range(h - 1, 0, -1):
        paths[:, r - 1] = paths[:, r] + moves[r, np.arange(starts.size), paths[:, r]]
    # The cheapest few, no two closer than a step on average.
    kept: list[int] = []
    for k in np.argsort(cost[np.arange(starts.size), end], kind="stable"):
        if len(kept) < CUTS and all(np.abs(paths[k] - paths[j]).mean() >= STEP * h for j in kept):
            kept.append(int(k))
    return paths[kept], cost[kept, end[kept]]


def _cuts(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate cuts through a group, left to right without crossing, and the ink each crosses: the cheapest
    paths, and the straight columns at the deepest minima of the ink profile. Where two 0s touch along a
    stretch, the straight column between them is no path's choice, since a path beside it crosses less ink
    by cutting through the side of one."""
    h, w = ink.shape
    paths, crossed = _paths(ink)
    profile = np.convolve(ink.sum(0), np.ones(3) / 3, mode="same")
    lo, hi = _inner(h, w)
    minima = [c for c in range(lo, hi) if profile[c] <= profile[c - 1] and profile[c] <= profile[c + 1]]
    columns = [c for c in sorted(minima, key=lambda c: profile[c])[:CUTS] if not (paths == c).all(1).any()]
    paths = np.concatenate([paths, np.repeat(np.array(columns, np.int64)[:, None], h, 1)])
    crossed = np.concatenate([crossed, ink[:, columns].sum(0)])
    order = np.argsort(paths.mean(1), kind="stable")
    return np.maximum.accumulate(paths[order], axis=0), crossed[order]


def _best_runs(score: dict[tuple[int, int], float], n: int) -> dict[int, tuple[float, list[tuple[int, int]]]]:
    """For each number of pieces, the best-scoring run of them from bound 0 to bound n-1, and its total."""
    # best[(j, k)]: the best total of k pieces covering bounds 0 to j, and the bound before the last piece.
    best: dict[tuple[int, int], tuple[float, int]] = {(0, 0): (0.0, -1)}
    for j in range(1, n):
        for k in range(1, j + 1):
            options = [(b[0] + score[(i, j)], i) for i in range(j) if (b := best.get((i, k - 1))) and (i, j) in score]
            if options:
                best[(j, k)] = max(options)
    runs = {}
    for (end, k), (total, _) in best.items():
        if end == n - 1:
            path, j = [], n - 1
            for left in range(k, 0, -1):
                i = best[(j, left)][1]
                path.append((i, j))
                j = i
            runs[k] = (total, path[::-1])
    return runs


def _extent(ink: np.ndarray) -> tuple[int, int, int, int]:
    """The box around some ink: left, top, width and height."""
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1] + 1 - cols[0]), int(rows[-1] + 1 - rows[0])


def _scores(predictor: Predictor, inks: list[np.ndarray], sizes: list[tuple[int, int]], tall: float) -> list[float]:
    """What the classifier makes of each piece of ink, less a charge for its width and one for being called "not
    a digit"; sizes are the width and height of each piece's ink."""
    predictions = predictor.classify(np.stack([fit_and_centre(x) for x in inks]))
    return [
        math.log(max(p.confidence, 1e-9)) - NOT_ONE * p.not_a_digit - WIDER * max(0.0, width / min(height, tall) - 1)
        for p, (width, height) in zip(predictions, sizes, strict=True)
    ]


def _split(predictor: Predictor, group: Group, tall: float) -> tuple[list[tuple[int, np.ndarray]], bool]:
    """The ink of each digit in a group, each with the column in the group it starts from, and whether one digit
    or several was a close call."""
    h, w = group.ink.shape
    if w <= WIDE * h:
        return [(0, group.ink)], False
    # The whole group is always a candidate: some single digits are wide. Its ink fills its box (ink_groups).
    [whole] = _scores(predictor, [group.ink], [(w, h)], tall)
    if w <= ALONE * h and whole >= math.log(SURE):
        return [(0, group.ink)], False
    paths, crossed = _cuts(group.ink)
    bounds = [np.zeros(h, np.int64), *paths, np.full(h, w)]
    cut = [*(CUT * crossed / h), 0.0]  # what the cut on each bound after the first costs: nothing on the edge
    cols = np.arange(w)
    pieces, sizes = {}, {}
    centres = [float(b.mean()) for b in bounds]
    for i, j in itertools.combinations(range(len(bounds)), 2):
        if (i, j) == (0, len(bounds) - 1) or centres[j] - centres[i] > (WIDEST + 2 * BAND) * h:
            continue  # the whole group, or too wide for a digit however the two cuts wander
        # Only the columns the two cuts span: drawing each piece on the whole group took most of the time.
        c0, c1 = int(bounds[i].min()), int(bounds[j].max())
        piece = np.where(
            (cols[c0:c1] >= bounds[i][:, None]) & (cols[c0:c1] < bounds[j][:, None]), group.ink[:, c0:c1], 0
        )
        if piece.any():
            _, _, width, height = _extent(piece)
            if NARROWEST * h <= width <= WIDEST * h and height >= SHORTEST * h:
                pieces[(i, j)], sizes[(i, j)] = (c0, piece), (width, height)
    if not pieces:
        return [(0, group.ink)], False
    score = dict(
        zip(pieces, _scores(predictor, [p for _, p in pieces.values()], list(sizes.values()), tall), strict=True)
    )
    counted = _best_runs({(i, j): s - cut[j - 1] for (i, j), s in score.items()}, len(bounds))
    if not counted:
        return [(0, group.ink)], False
    # Each number of digits by its best total, the whole group first, so that it wins a tie.
    totals = sorted([(whole, 1), *((total, k) for k, (total, _) in counted.items())], key=lambda t: -t[0])
    (best, k), (second, _) = totals[:2]
    doubtful = best - second < DOUBT
    if k == 1:
        return [(0, group.ink)], doubtful
    return [pieces[span] for span in _best_runs(score, len(bounds))[k][1]], doubtful


def read_number(predictor: Predictor, data: bytes, max_digits: int = MAX_DIGITS) -> Reading:
    """Every digit in an upload, left to right, with its box in the upload's pixels."""
    im: Image.Image = decode(data, predictor.max_pixels)
    groups = ink_groups(ink_map(im))
    if len(groups) > max_digits:
        raise TooManyDigits(
            N_("the image has %(marks)s separate marks, over the limit of %(limit)s digits; crop it to the number"),
            marks=len(groups),
            limit=max_digits,
        )
    full_w, full_h = im.info[FULL_SIZE]
    sx, sy = full_w / im.width, full_h / im.height
    pieces, boxes, doubtful = [], [], False
    tall = float(np.median([g.ink.shape[0] for g in groups]))
    for group in groups:
        inks, bad = _split(predictor, group, tall)
        doubtful |= bad
        for c0, ink in inks:
            pieces.append(fit_and_centre(ink))
            x, y, w, h = _extent(ink)
            x, y = group.left + c0 + x, group.top + y
            boxes.append((round(x * sx), round(y * sy), round(w * sx), round(h * sy)))
    if len(pieces) > max_digits:
        raise TooManyDigits(
            N_("the image holds %(digits)s digits, over the limit of %(limit)s; crop it to the number"),
            digits=len(pieces),
            limit=max_digits,
        )
    predictions = predictor.classify(np.stack(pieces))
    return Reading([Digit(p, b) for p, b in zip(predictions, boxes, strict=True)], doubtful)
