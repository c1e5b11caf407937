import io
import json
import re
import subprocess
import sys

from PIL import Image

from conftest import ROOT, encode


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
