"""Accepted corrections as a dataset that other tools read: a PNG for each, a CSV row for each, and a manifest.

    DIR/images/digit-3.png    the 28×28 input the model saw, ink bright on black; a number's digits side by side
    DIR/corrections.csv       one row per correction: COLUMNS, below
    DIR/manifest.json         the format and its version, what each column means, and each image's sha256

`python -m digits.feedback.review --export DIR` adds the corrections that are not in DIR yet, and
`train.py feedback --folder DIR` learns from DIR as from the database: the same digits in the same order, so the
same weights from the same seed. A folder may come from anywhere, so reading one checks it before any image is
decoded: every row's image is in the manifest with the sha256 it has, at most MAX_PNG_BYTES, and a PNG 28 px
high and 28 px wide per digit of its label.
"""

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from digits.feedback.store import Listed, labelled_digits
from digits.inference.weights import file_sha256

FORMAT, VERSION = "digits-corrections", 1
CSV, MANIFEST, IMAGES = "corrections.csv", "manifest.json", "images"
COLUMNS = {
    "image": "the PNG, relative to the folder: the 28×28 input the model saw, or a number's digits side by side",
    "kind": "digit or number",
    "label": "the right answer, as the user gave it and an operator accepted it",
    "predicted": "what the model answered",
    "confidence": "the model's confidence in its answer, 0 to 1",
    "model": "the weights that answered: the first 12 characters of their sha256",
    "time": "when the user sent the correction, ISO 8601 in UTC",
    "client_corrections": "how many corrections its client had sent in all at the export (never who the client is)",
}
MAX_DIGITS = 64  # a number's label, as the database holds it
MAX_PNG_BYTES = 1 << 20  # far over a 28×(28·64) PNG's, and under what a folder's reader should decode


class FolderError(ValueError):
    """An exported folder that doesn't hold what its manifest and CSV say."""


@dataclass(frozen=True)
class Exported:
    """One correction read back from a folder."""

    name: str  # digit-3, number-1: as the review names it
    number: bool
    label: str
    predicted: str
    model: str
    pixels: np.ndarray  # uint8, 28 px high

    @property
    def digits(self) -> list[tuple[np.ndarray, int]]:
        return labelled_digits(self.pixels, self.label, self.number)


def export(corrections: list[Listed], folder: Path) -> int:
    """Add the corrections whose images are not in the folder yet, and write its manifest; how many were added."""
    table = folder / CSV
    fresh = not table.exists()
    have = set() if fresh else {row["image"] for row in _rows(folder)}
    new = [c for c in corrections if _image(c.name) not in have]
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    for c in new:  # the images before the rows that name them, and the manifest last
        (folder / _image(c.name)).write_bytes(c.image_png)
    with table.open("a", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        if fresh:
            writer.writeheader()
        writer.writerows(_row(c) for c in new)
    images = {row["image"]: file_sha256(folder / row["image"]) for row in _rows(folder)}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": len(images),
        "columns": COLUMNS,
        "images": images,
    }
    staged = folder / f".{MANIFEST}.new"
    staged.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    staged.replace(folder / MANIFEST)  # whole, never half-written
    return len(new)


def read(folder: Path) -> list[Exported]:
    """The folder's corrections, checked, in the database's order: single digits by row, then numbers by row."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        rows = _rows(folder)
    except (OSError, ValueError, csv.Error) as e:
        raise FolderError(f"{folder} is not a folder of exported corrections ({e}); make one with --export") from e
    if not isinstance(manifest, dict) or (manifest.get("format"), manifest.get("version")) != (FORMAT, VERSION):
        raise FolderError(f"{folder}/{MANIFEST} is not a version {VERSION} manifest of exported corrections")
    listed = manifest.get("images")
    if len({row.get("image") for row in rows}) < len(rows):
        raise FolderError(f"{folder}/{CSV} names one image in more than one row")
    out = [_checked(folder, i, row, listed if isinstance(listed, dict) else {}) for i, row in enumerate(rows, 1)]
    return sorted(out, key=lambda e: (e.number, int(e.name.rsplit("-", 1)[1])))


def _checked(folder: Path, line: int, row: dict[str, str], listed: dict[str, str]) -> Exported:
    """One row's correction, or FolderError; line counts the CSV's rows from 1, after its header."""
    name, kind, label = row.get("image") or "", row.get("kind"), row.get("label") or ""
    where = f"{folder}/{CSV}, row {line}"
    number = kind == "number"
    # Named as export() names it, which also keeps the path inside the folder.
    if kind not in ("digit", "number") or not re.fullmatch(rf"{IMAGES}/{kind}-[0-9]{{1,12}}\.png", name):
        raise FolderError(f"{where}: the kind must be digit or number, and the image named as the export names it")
    if not re.fullmatch(f"[0-9]{{1,{MAX_DIGITS if number else 1}}}", label):
        raise FolderError(f"{where}: the label must be one digit, or a number of at most {MAX_DIGITS} digits")
    path = folder / name
    if not path.is_file() or path.stat().st_size > MAX_PNG_BYTES:
        raise FolderError(f"{where}: the image is missing, or over {MAX_PNG_BYTES:,} bytes")
    data = path.read_bytes()
    if listed.get(name) != hashlib.sha256(data).hexdigest():
        raise FolderError(f"{where}: the image is not the one the manifest lists")
    try:
        im = Image.open(io.BytesIO(data), formats=["PNG"])
    except (OSError, SyntaxError, ValueError) as e:
        raise FolderError(f"{where}: the image is not a PNG that can be read") from e
    if im.size != (28 * len(label), 28):  # before a pixel is decoded
        raise FolderError(f"{where}: the image is {im.width}×{im.height}, not 28 px high and 28 wide per digit")
    try:
        pixels = np.asarray(im.convert("L"))
    except (OSError, SyntaxError, ValueError) as e:
        raise FolderError(f"{where}: the image is damaged") from e
    correction = name.removeprefix(f"{IMAGES}/").removesuffix(".png")
    return Exported(correction, number, label, row.get("predicted") or "", row.get("model") or "", pixels)


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / CSV).open(newline="") as f:
        return list(csv.DictReader(f))


def _row(c: Listed) -> dict[str, str | int | float]:
    return {
        "image": _image(c.name),
        "kind": "number" if c.number else "digit",
        "label": c.label,
        "predicted": c.predicted,
        "confidence": round(c.confidence, 6),
        "model": c.model,
        "time": c.created.astimezone(UTC).isoformat(timespec="seconds"),
        "client_corrections": c.client_total,
    }


def _image(name: str) -> str:
    return f"{IMAGES}/{name}.png"
