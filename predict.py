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
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from model import MLP
from preprocess import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    ImageTooLarge,
    decode_cost,
    fit_and_centre,
    ink_map,
    load,
    normalize,
    open_image,
    several_digits,
)
from segment import read_number

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "mnist_mlp.safetensors"

Prepared = tuple[np.ndarray, bool]  # an upload's 28×28 input, and whether it seems to hold several digits

DEFAULT_UNCERTAIN_BELOW = 0.5  # for weights that don't record a threshold chosen on validation
# The hint that /predict gives with an image of several digits.
SEVERAL_DIGITS = "the image seems to hold several digits; POST it to /predict/number to read the whole number"
# The hint for an image that doesn't look like a digit at all.
NOT_A_DIGIT = "this doesn't look like a handwritten digit; send a photo, scan or drawing of one digit"
# An uncertain answer whose two likeliest digits together fall short of this is no digit, not a choice between
# two: trained on outliers (outliers.py), the model spreads its answer over all ten for what isn't a digit.
NOT_A_DIGIT_TOP_TWO = 0.75


class WeightsError(RuntimeError):
    """The weights file is missing, corrupt, or not the one recorded."""


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
    """An image in [0,1], H×W grey or H×W×3 RGB (the 28×28 input, its explanation), as an 8-bit PNG.

    Written with zlib rather than Pillow: Pillow's encoder took 34 µs a call on 784 pixels, nearly all
    of it Python, a tenth of a whole prediction; these three chunks take 15 µs.
    """
    pixels = np.rint(image * 255).astype(np.uint8)
    h, w = pixels.shape[:2]
    rows = np.zeros((h, pixels[0].size + 1), dtype=np.uint8)  # each row starts with filter type 0 (none)
    rows[:, 1:] = pixels.reshape(h, -1)
    colour = 2 if pixels.ndim == 3 else 0  # RGB, or grayscale
    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)  # 8 bits, deflate, no interlace
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
