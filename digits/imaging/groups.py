"""Ink grouped into digits, left to right: strokes stacked over one another join, fragments join their
neighbour, dust is dropped. segment.py cuts the groups that hold touching digits."""

from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, TiffImagePlugin, UnidentifiedImageError, WebPImagePlugin  # noqa: F401
from scipy import ndimage

from digits.i18n.message import N_
from digits.imaging.errors import NoDigitFound, TooManyMarks

DUST = 0.02  # strokes with less ink than this share of the largest are specks, not digits
STACKED = 0.4  # strokes whose columns overlap this share of the narrower one's belong to one digit
# A group shorter than this share of the tallest group's height is part of a neighbour. Chosen on numbers of
# MNIST training digits: 0.3 and 0.4 read the same, 0.5 read fewer numbers right. Of the tallest, not of the
# median: of a digit and a piece of it apart, the median is their mean, which the piece drags down, and a 5 whose
# bar stood off to the right (40 px tall, the rest 137) was "several digits". Of 500 training digits, every photo
# and page row then answered "several digits" for none rather than one, the numbers the same but one more apart
# in a shadow read right.
FRAGMENT = 0.4
# Marks (connected strokes past the dust) one image may hold: a 32-digit number with every stroke broken in
# three has about a hundred.
MAX_MARKS = 256


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
        raise NoDigitFound(N_("no digit found: no ink in the image; write a digit in dark ink on light paper"))
    mass = np.asarray(ndimage.sum_labels(x, labels, index=np.arange(1, n + 1)))
    kept = np.flatnonzero(mass >= DUST * mass.max())
    # Counted before anything costs per mark: 64,000 dots in a 1 KB PNG took 4 s to group.
    if kept.size > MAX_MARKS:
        raise TooManyMarks(
            N_(
                "the image holds %(marks)s separate marks, too many for handwriting; "
                "crop it to the digits, on plain paper"
            ),
            marks=int(kept.size),
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
    tall = max(rows.stop - rows.start for _, rows, _ in groups)
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
