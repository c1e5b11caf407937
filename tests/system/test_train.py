import json
import subprocess
import sys

from safetensors import safe_open

from digits.inference.weights import sha256_path
from model import MLP
from tests.helpers import ROOT


def test_smoke_run_writes_weights_metadata_and_report(tmp_path):
    out, folder = tmp_path / "smoke.safetensors", tmp_path / "report"
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "--epochs",
        "1",
        "--teacher-epochs",
        "1",
        "--subset",
        "2000",
        "--val-size",
        "1000",
        "--real-val",
        "200",
        "--report-digits",
        "50",
        "--quiet",
        "--out",
        str(out),
        "--report",
        str(folder),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict: it has keys(), no iteration)
    MLP().load_state_dict(tensors)  # strict: exactly the network's parameters, no teacher inside
    for key in (
        "test_accuracy",
        "val_accuracy",
        "epochs",
        "seed",
        "train_seconds",
        "device",
        "torch_version",
        "temperature",
        "uncertain_below",
        "not_a_digit_below",
        "val_flagged",
        "ece_before",
        "ece_after",
        "teacher_test_accuracy",
        "rejection",
        "val_outliers_flagged",
    ):
        assert key in meta
    assert meta["epochs"] == "1"
    assert meta["seed"] == "0"
    assert json.loads(meta["data_md5"])["t10k-images-idx3-ubyte"] == "2646ac647ad5339dbf082846283269ea"
    assert float(meta["test_accuracy"]) > 0.5  # one epoch on 2,000 images already learns something real
    assert float(meta["ece_after"]) < float(meta["ece_before"])  # the temperature fitted on validation helps on test
    assert sha256_path(out).is_file()
    pictures = ("curves.png", "confusion.png", "misclassified.png", "reliability.png", "not_a_digit.png")
    for name in (*pictures, "summary.json", "README.md"):
        assert (folder / name).stat().st_size > 1000 or name.endswith((".json", ".md"))
    assert json.loads((folder / "summary.json").read_text())["test_accuracy"] == float(meta["test_accuracy"])

    r = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "evaluate", "--weights", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert f"test accuracy {float(meta['test_accuracy']):.2%}" in r.stdout
