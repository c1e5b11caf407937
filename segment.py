"""Reading whole numbers: the ink segmented into digits, left to right, each read like a single digit.

    python predict.py --number meter.jpg

predict.ink_groups() finds the digits that stand apart. A group wider than a digit is touching digits:
it is cut where the classifier likes the pieces best, choosing among cuts at the minima of its column
ink profile with a small dynamic program. Every piece goes through predict.fit_and_centre(), the same
MNIST-style normalization as a single digit.
"""

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from predict import FULL_SIZE, Group, ImageError, Prediction, Predictor, decode, fit_and_centre, ink_groups, ink_map

WIDE = 0.6  # a group wider than its height times this may be several touching digits
NARROWEST, WIDEST = 0.12, 1.6  # a cut piece's width, in units of its group's height (a 1 can be very narrow)
CUTS = 12  # candidate cuts tried in one group, the deepest minima of its ink profile
# A piece scores log(confidence), less PIECE, less WIDER for each unit its width passes its height:
# 1% of MNIST's digits are wider than 1.43 times their height, while two touching digits are about 1.6.
# Chosen on numbers made of MNIST training digits, once the model had learnt to doubt overlapping digits
# (outliers.py): its low confidence on a squeezed pair now speaks for a cut, where it took a piece penalty of 4.
PIECE, WIDER = 1.0, 3.0
DOUBT = 0.75  # a group read whole or split, whichever scored less than this behind the other: a doubtful call
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


def _cuts(ink: np.ndarray) -> list[int]:
    """Candidate columns to cut a group at: the deepest local minima of its column ink profile."""
    h, w = ink.shape
    profile = np.convolve(ink.sum(0), np.ones(3) / 3, mode="same")
    lo, hi = max(1, round(NARROWEST * h)), w - max(1, round(NARROWEST * h))
    minima = [c for c in range(lo, hi) if profile[c] <= profile[c - 1] and profile[c] <= profile[c + 1]]
    return sorted(sorted(minima, key=lambda c: profile[c])[:CUTS])


def _best_path(score: dict[tuple[int, int], float], n: int) -> tuple[float, list[tuple[int, int]]] | None:
    """The best-scoring run of pieces from bound 0 to bound n-1, and its total; None if no pieces reach."""
    # best[j]: the best total score of pieces covering bounds 0 to j, and the bound before the last piece.
    best: list[tuple[float, int] | None] = [(0.0, -1)] + [None] * (n - 1)
    for j in range(1, n):
        options = [(b[0] + score[(i, j)], i) for i in range(j) if (b := best[i]) is not None and (i, j) in score]
        best[j] = max(options) if options else None
    end = best[-1]
    if end is None:
        return None
    path, j = [], n - 1
    while j > 0:
        entry = best[j]
        assert entry is not None
        path.append((entry[1], j))
        j = entry[1]
    return end[0], path[::-1]


def _split(predictor: Predictor, group: Group) -> tuple[list[tuple[int, int]], bool]:
    """The column ranges of the digits in a group, and whether one digit or several was a close call."""
    h, w = group.ink.shape
    if w <= WIDE * h:
        return [(0, w)], False
    bounds = [0, *_cuts(group.ink), w]
    whole = (0, len(bounds) - 1)  # always a candidate: some single digits are wide
    spans = [whole] + [(i, j) for i in range(len(bounds)) for j in range(i + 1, len(bounds))
                       if (i, j) != whole and NARROWEST * h <= bounds[j] - bounds[i] <= WIDEST * h]  # fmt: skip
    pieces = [fit_and_centre(group.ink[:, bounds[i] : bounds[j]]) for i, j in spans]
    score = {
        (i, j): math.log(max(p.confidence, 1e-9)) - PIECE - WIDER * max(0.0, (bounds[j] - bounds[i]) / h - 1)
        for (i, j), p in zip(spans, predictor.classify(np.stack(pieces)), strict=True)
    }
    split = _best_path({span: s for span, s in score.items() if span != whole}, len(bounds))
    if split is None or score[whole] >= split[0]:
        return [(0, w)], split is not None and score[whole] - split[0] < DOUBT
    return [(bounds[i], bounds[j]) for i, j in split[1]], split[0] - score[whole] < DOUBT


def read_number(predictor: Predictor, data: bytes, max_digits: int = MAX_DIGITS) -> Reading:
    """Every digit in an upload, left to right, with its box in the upload's pixels."""
    im: Image.Image = decode(data, predictor.max_pixels)
    groups = ink_groups(ink_map(im))
    if len(groups) > max_digits:
        raise TooManyDigits(f"the image has {len(groups)} separate marks, over the limit of {max_digits} digits; "
                            "crop it to the number")  # fmt: skip
    full_w, full_h = im.info[FULL_SIZE]
    sx, sy = full_w / im.width, full_h / im.height
    pieces, boxes, doubtful = [], [], False
    for group in groups:
        spans, bad = _split(predictor, group)
        doubtful |= bad
        for c0, c1 in spans:
            ink = group.ink[:, c0:c1]
            rows = np.flatnonzero(ink.any(1))
            pieces.append(fit_and_centre(ink))
            x, y = group.left + c0, group.top + int(rows[0])
            boxes.append((round(x * sx), round(y * sy), round((c1 - c0) * sx), round((rows[-1] + 1 - rows[0]) * sy)))
    if len(pieces) > max_digits:
        raise TooManyDigits(
            f"the image holds {len(pieces)} digits, over the limit of {max_digits}; crop it to the number"
        )
    predictions = predictor.classify(np.stack(pieces))
    return Reading([Digit(p, b) for p, b in zip(predictions, boxes, strict=True)], doubtful)
