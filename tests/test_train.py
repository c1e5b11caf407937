import json
import subprocess
import sys

from safetensors import safe_open

from conftest import ROOT
from model import MLP


def test_smoke_run_writes_loadable_weights_with_metadata(tmp_path):
    out = tmp_path / "smoke.safetensors"
    cmd = [sys.executable, str(ROOT / "train.py"), "--epochs", "1", "--subset", "2000", "--val-size", "1000",
           "--quiet", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    MLP().load_state_dict(tensors)  # strict: exactly the network's parameters
    for key in ("test_accuracy", "val_accuracy", "epochs", "seed", "train_seconds", "device", "torch_version"):
        assert key in meta
    assert meta["epochs"] == "1" and meta["seed"] == "0"
    assert json.loads(meta["data_md5"])["t10k-images-idx3-ubyte"] == "2646ac647ad5339dbf082846283269ea"
    # One epoch on 2,000 images already learns something real.
    assert float(meta["test_accuracy"]) > 0.6

    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--eval-only", "--weights", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"test accuracy {float(meta['test_accuracy']):.2%}" in r.stdout
