import csv
import io
import json
import re
import subprocess
import sys

import pytest
from PIL import Image

from digits.imaging.png import encode
from tests.helpers import ROOT


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), *args], capture_output=True, text=True, timeout=120
    )


def test_one_line_per_file(tmp_path, mnist_test):
    images, labels = mnist_test
    paths = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        path.write_bytes(encode(images[i]))
        paths.append(str(path))
    r = run(*paths)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    for line, path, label in zip(lines, paths, labels[:3], strict=True):
        assert line.startswith(f"{path}: {label} (")
        assert line.endswith("%)")


def test_json_lines(tmp_path, seven_png):
    path = tmp_path / "seven.jpg"
    Image.open(io.BytesIO(seven_png)).save(path, "JPEG", quality=95)
    r = run("--json", str(path))
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["path"] == str(path)
    assert record["digit"] == 7
    assert 0.5 < record["confidence"] <= 1
    assert len(record["probabilities"]) == 10


def test_bad_and_missing_files_are_reported_and_the_rest_still_run(tmp_path, seven_png):
    good, bad, missing = tmp_path / "good.png", tmp_path / "bad.png", tmp_path / "missing.png"
    good.write_bytes(seven_png)
    bad.write_text("not an image")
    r = run(str(bad), str(missing), str(good))
    assert r.returncode == 1
    assert re.fullmatch(rf"{good}: 7 \(\d+\.\d%\)", r.stdout.strip())
    assert f"{bad}: error: the file is not an image" in r.stderr
    assert f"{missing}: error: No such file" in r.stderr


def test_an_image_of_no_digit_is_called_so(tmp_path, clothes_pngs, seven_png):
    boot, seven = tmp_path / "boot.png", tmp_path / "seven.png"
    boot.write_bytes(clothes_pngs[0])
    seven.write_bytes(seven_png)
    r = run(str(boot), str(seven))
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(rf"{boot}: not a digit, at best \d \(\d+\.\d%\)\n{seven}: 7 \(\d+\.\d%\)\n", r.stdout)
    csv_rows = list(csv.DictReader(io.StringIO(run("--format", "csv", str(boot), str(seven)).stdout)))
    assert [row["not_a_digit"] for row in csv_rows] == ["True", "False"]


@pytest.fixture
def scans(tmp_path, mnist_test):
    """A folder of 150 digits in nested folders, with a damaged scan and a file that is no image at all."""
    images, labels = mnist_test
    expected = {}
    for i in range(150):
        path = tmp_path / "scans" / f"box{i % 3}" / ("deeper" if i % 2 else "") / f"{i:03}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(images[i]))
        expected[str(path)] = int(labels[i])
    (tmp_path / "scans" / "box1" / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "scans" / "notes.txt").write_text("not a scan")
    return tmp_path / "scans", expected


def test_a_folder_as_csv_on_several_workers(scans):
    folder, expected = scans
    r = run(str(folder), "--format", "csv", "--workers", "2")
    assert r.returncode == 1, r.stderr  # one file could not be read
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["path"] for row in rows] == sorted([*expected, str(folder / "box1" / "damaged.png")])
    [damaged] = [row for row in rows if row["error"]]
    assert damaged["path"].endswith("damaged.png")
    assert "damaged or truncated" in damaged["error"] or "not an image" in damaged["error"]
    read = {row["path"]: int(row["digit"]) for row in rows if not row["error"]}
    assert read.keys() == expected.keys()
    assert sum(read[p] == expected[p] for p in read) >= 148  # the model's own accuracy on these 150
    good = [row for row in rows if not row["error"]]
    assert all(0 < float(row["confidence"]) <= 1 for row in good)
    assert {row["uncertain"] for row in good} <= {"True", "False"}


def test_the_workers_change_nothing_but_the_speed(scans):
    folder, _ = scans
    one, two = (run(str(folder), "--format", "jsonl", "--workers", n) for n in ("1", "2"))
    assert one.stdout == two.stdout
    records = [json.loads(line) for line in one.stdout.splitlines()]
    assert len(records) == 151
    assert {"path", "digit", "confidence", "uncertain", "probabilities"} <= set(records[0])
