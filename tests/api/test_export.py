"""Accepted corrections exported as a dataset (digits/feedback/export.py), and read back as train.py reads them."""

import csv
import hashlib
import json

import numpy as np
import pytest

from digits.feedback import export
from digits.feedback.ids import Seen
from digits.feedback.store import ACCEPTED, REJECTED, FeedbackStore
from digits.imaging.png import encode
from digits.training.finetune import from_database, from_folder


def corrected(store: FeedbackStore, mnist_test, i: int, verdict: str = ACCEPTED, number: bool = False) -> int:
    """Correction i, judged: a digit read as 7 and corrected to its label, or a two-digit number."""
    images, labels = mnist_test
    label: int | str
    if number:
        crops = encode(np.hstack([images[i], images[i + 1]]))
        seen, label = Seen(f"{i:032x}", crops, "77", 0.6, "b" * 64), f"{labels[i]}{labels[i + 1]}"
    else:
        seen, label = Seen(f"{i:032x}", encode(images[i]), 7, 0.6, "a" * 64), int(labels[i])
    row = store.record(seen, label, f"client {i % 2}", per_hour=100)
    store.judge("number_corrections" if number else "corrections", row, verdict)
    return row


@pytest.fixture
def store(tmp_path, mnist_test):
    """Four digits (one rejected, one left pending) and a number."""
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    for i in range(3):
        corrected(store, mnist_test, i, REJECTED if i == 1 else ACCEPTED)
    store.record(Seen(f"{9:032x}", encode(mnist_test[0][9]), 7, 0.6, "a" * 64), 3, "client 0", per_hour=100)
    corrected(store, mnist_test, 21, number=True)
    yield store
    store.close()


def csv_rows(folder) -> list[dict[str, str]]:
    with (folder / export.CSV).open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_accepted_corrections_become_pngs_a_csv_and_a_manifest(store, tmp_path, mnist_test):
    folder = tmp_path / "out"
    assert export.export(store.listed(ACCEPTED), folder) == 3
    found = csv_rows(folder)
    assert [r["image"] for r in found] == ["images/digit-1.png", "images/digit-3.png", "images/number-1.png"]
    assert list(found[0]) == list(export.COLUMNS)  # no column names the client, only its count
    assert [r["kind"] for r in found] == ["digit", "digit", "number"]
    assert found[2]["label"] == f"{mnist_test[1][21]}{mnist_test[1][22]}"
    assert found[2]["predicted"] == "77"
    assert [r["model"] for r in found] == ["a" * 12, "a" * 12, "b" * 12]
    assert [r["client_corrections"] for r in found] == ["3", "3", "2"]  # client 0 sent three, client 1 two
    assert found[0]["time"].endswith("+00:00")
    manifest = json.loads((folder / export.MANIFEST).read_text())
    assert (manifest["format"], manifest["version"], manifest["rows"]) == (export.FORMAT, export.VERSION, 3)
    for row in found:
        data = (folder / row["image"]).read_bytes()
        assert manifest["images"][row["image"]] == hashlib.sha256(data).hexdigest()
    assert (folder / "images" / "digit-1.png").read_bytes() == encode(mnist_test[0][0])


def test_exporting_again_adds_only_what_is_new(store, tmp_path, mnist_test):
    folder = tmp_path / "out"
    assert export.export([], folder) == 0  # a folder with no corrections yet, then its first ones
    assert export.read(folder) == []
    export.export(store.listed(ACCEPTED), folder)
    assert export.export(store.listed(ACCEPTED), folder) == 0
    corrected(store, mnist_test, 30)
    assert export.export(store.listed(ACCEPTED), folder) == 1
    names = [r["image"] for r in csv_rows(folder)]
    assert len(names) == len(set(names)) == 4
    assert json.loads((folder / export.MANIFEST).read_text())["rows"] == 4


def test_a_folder_teaches_what_the_database_does(store, tmp_path, mnist_test):
    """The same digits in the same order, and the same tally per model: fine-tuning on either is the same."""
    folder = tmp_path / "out"
    corrected(store, mnist_test, 40, number=True)
    corrected(store, mnist_test, 50)  # after a number: the database gives digits first, then numbers
    export.export(store.listed(ACCEPTED), folder)
    ours, theirs = from_folder(folder), from_database(store.url)
    assert [label for _, label in ours.digits] == [label for _, label in theirs.digits]
    assert len(ours.digits) == 3 + 2 * 2
    for (a, _), (b, _) in zip(ours.digits, theirs.digits, strict=True):
        assert a.tobytes() == b.tobytes()
    assert ours.by_model == theirs.by_model


def tamper(folder, row: int, **changes: str) -> None:
    rows = csv_rows(folder)
    rows[row].update(changes)
    with (folder / export.CSV).open("w", newline="") as f:
        writer = csv.DictWriter(f, export.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"image": "images/../../fb.db"}, "named as the export names it"),
        ({"kind": "letter"}, "digit or number"),
        ({"label": "12"}, "one digit"),
        ({"label": "٣"}, "one digit"),  # a digit to str.isdecimal(), not to int() of MNIST's labels
        ({"image": "images/digit-3.png"}, "one image in more than one row"),
        ({"image": "images/digit-9.png"}, "missing"),
    ],
)
def test_a_folder_that_says_otherwise_is_refused(store, tmp_path, change, says):
    folder = tmp_path / "out"
    export.export(store.listed(ACCEPTED), folder)
    tamper(folder, 0, **change)
    with pytest.raises(export.FolderError, match=says):
        export.read(folder)


def test_an_image_changed_after_the_export_is_refused(store, tmp_path):
    folder = tmp_path / "out"
    export.export(store.listed(ACCEPTED), folder)
    (folder / "images" / "digit-3.png").write_bytes(encode(np.zeros((28, 56), np.uint8)))
    with pytest.raises(export.FolderError, match="row 2: the image is not the one the manifest lists"):
        export.read(folder)
    manifest = json.loads((folder / export.MANIFEST).read_text())
    manifest["images"]["images/digit-3.png"] = hashlib.sha256((folder / "images/digit-3.png").read_bytes()).hexdigest()
    (folder / export.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(export.FolderError, match="56×28, not 28 px high and 28 wide per digit"):
        export.read(folder)
