"""Predict the digit in any uploaded image, with the weights that train.py wrote.

    python predict.py seven.png photo.jpg    # one line per file: path, digit, confidence
    python predict.py scans/ --format csv    # every image under a folder, on every core: CSV (or jsonl)
    python predict.py --number meter.jpg     # a whole number, digit by digit (segment.py)

preprocess.py turns an upload into the 28x28 input; Predictor checks and loads the weights once, and
answers with the digit, its calibrated confidence, and whether to doubt it.
"""

import argparse
import csv
import gc
import io
import json
import multiprocessing
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from digits.imaging.errors import ImageError
from digits.inference.forward import limit_threads
from digits.inference.predictor import Predictor
from digits.inference.segment import read_number
from digits.inference.weights import DEFAULT_WEIGHTS, WeightsError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}
CHUNK = 256  # files a worker reads and classifies as one batch: 256 ran 10% faster than 64, 20% than 16
FIELDS = ["path", "digit", "confidence", "uncertain", "not_a_digit", "several", "error"]  # the CSV columns
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
                    "several": r.several,
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
    good = "".join(f"{r['path']}: {_doubt(r)}{r[key]} ({r['confidence']:.1%})\n" for r in records if "error" not in r)
    return good, "".join(f"{r['path']}: error: {r['error']}\n" for r in records if "error" in r)


def _doubt(record: dict[str, Any]) -> str:
    """What a line says before its digit when the image holds no single digit, as /predict's hint says it."""
    if record.get("several"):
        return "several digits (read them with --number), at best "
    return "not a digit, at best " if record.get("not_a_digit") else ""


def _start_worker() -> None:
    limit_threads(1)  # the processes share the cores; threads inside each would only contend


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
