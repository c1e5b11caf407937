"""The realism benchmark: MNIST test digits redrawn as people's digits arrive (redraw.py), read by the service.

    python bench/realism.py                       # 1,000 test digits per condition; writes bench/REALISM.md
    python bench/realism.py --digits 300 --no-write
    python bench/realism.py --weights other.safetensors --out /tmp/other.md
    python bench/realism.py --split train --only photo --no-write   # for tuning: training digits, photos

For each condition: accuracy (the likeliest digit is the true one), how many answers are flagged uncertain,
how many are called "not a digit", and how many "several digits". Every condition draws the same test
digits, so rows differ only by the condition. Each upload goes through Predictor.predict_many(), decoding
and preprocessing included, exactly as /predict reads it.
"""

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import machine
from digits.imaging.errors import ImageError
from digits.inference.predictor import Predictor
from digits.inference.weights import DEFAULT_WEIGHTS
from digits.training import dataset, redraw

OUT = Path(__file__).resolve().parent / "REALISM.md"
Row = dict[str, float]
COLUMNS = ("accuracy", "flagged", "not_a_digit", "several")  # per digit: read right, and how it was answered

_predictor: Predictor | None = None  # in each worker process
_digits: np.ndarray = np.empty(0)
_labels: np.ndarray = np.empty(0)


def measure(task: tuple[str, int, int, int]) -> tuple[str, np.ndarray]:
    """One condition over digits [start, stop): per digit, read right / flagged / not a digit / several."""
    name, start, stop, seed = task
    assert _predictor is not None, "no model in this process"
    _, render = redraw.conditions()[name]
    rng = np.random.default_rng([seed, start])
    uploads = [render(redraw.skeleton(d), rng) for d in _digits[start:stop]]
    return name, answers(_predictor, uploads, _labels[start:stop])


def answers(predictor: Predictor, uploads: list[bytes], labels: np.ndarray) -> np.ndarray:
    """Per upload, as COLUMNS: read right, flagged, "not a digit", "several digits"."""
    out = np.zeros((len(uploads), len(COLUMNS)), dtype=bool)
    for i, (p, label) in enumerate(zip(predictor.predict_many(uploads), labels, strict=True)):
        if isinstance(p, ImageError):  # no digit found counts as not read, and as not a digit
            out[i] = (False, True, True, False)
        else:
            out[i] = (p.digit == label, p.uncertain, p.not_a_digit, p.several)
    return out


def run(
    predictor: Predictor, digits: np.ndarray, labels: np.ndarray, seed: int, workers: int, only: str | None = None
) -> dict[str, Row]:
    """Each condition's rates over all the digits, measured by `workers` forked processes."""
    global _predictor, _digits, _labels
    _predictor, _digits, _labels = predictor, digits, labels
    chunk = 100
    tasks = [
        (name, i, min(i + chunk, len(digits)), seed)
        for name, (group, _) in redraw.conditions().items()
        if only in (None, group)
        for i in range(0, len(digits), chunk)
    ]
    results: dict[str, list[np.ndarray]] = {}
    # One thread each: the processes share the cores, and a forked child that used the parent's OpenMP pool
    # would deadlock in its first forward pass.
    with multiprocessing.get_context("fork").Pool(workers, torch.set_num_threads, (1,)) as pool:
        for name, out in pool.imap(measure, tasks):
            results.setdefault(name, []).append(out)
    rows = {}
    for name, parts in results.items():
        rows[name] = dict(zip(COLUMNS, np.concatenate(parts).mean(0).tolist(), strict=True))
    return rows


def table(rows: dict[str, Row]) -> str:
    lines = ['| condition | accuracy | flagged | "not a digit" | "several digits" |', "| --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.1%}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def read(text: str) -> dict[str, Row]:
    """The rows of a table that table() wrote, to its last printed digit."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == len(COLUMNS) + 1 and cells[1].endswith("%"):
            rows[cells[0]] = {c: float(cell.rstrip("%")) / 100 for c, cell in zip(COLUMNS, cells[1:], strict=True)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits", type=int, default=1000, help="test digits per condition (default: 1000)")
    parser.add_argument(
        "--split",
        choices=["test", "train"],
        default="test",
        help="test digits for the figures, training digits to tune on (default: test)",
    )
    groups = sorted({group for group, _ in redraw.conditions().values()})
    parser.add_argument("--only", choices=groups, help="one group (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="which digits, and how each is drawn (default: 0)")
    parser.add_argument(
        "--weights", type=Path, default=DEFAULT_WEIGHTS, help="weights (default: weights/mnist_mlp.safetensors)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where the table is written (default: bench/REALISM.md)")
    parser.add_argument("--no-write", action="store_true", help="print the table only (default: off)")
    cores = len(os.sched_getaffinity(0))
    parser.add_argument("--workers", type=int, default=cores, help=f"processes (default: one per core, {cores} here)")
    args = parser.parse_args()

    images, labels = dataset.load(train=args.split == "train")
    pick = np.random.default_rng(args.seed).permutation(len(images))[: args.digits]
    start = time.perf_counter()
    rows = run(Predictor(args.weights), images.numpy()[pick], labels.numpy()[pick], args.seed, args.workers, args.only)
    text = (
        "# The realism benchmark\n\n"
        f"`python bench/realism.py --digits {args.digits} --seed {args.seed} --split {args.split}`, "
        f"weights `{args.weights.name}`, {machine()}, {time.perf_counter() - start:.0f} s.\n\n{table(rows)}\n"
    )
    print(text)
    if not args.no_write:
        args.out.write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
