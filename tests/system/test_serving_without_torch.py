"""Serving reads the weights and runs the network in numpy: no process of the service or of predict.py loads torch,
whose import took 1.8 of the 2.3 s that starting took. A `torch` that can't be imported stands first on the path of
each process, and of the sandbox's processes that it starts."""

import os
import subprocess
import sys

from digits.imaging.png import encode
from tests.helpers import ROOT

APP = """
from fastapi.testclient import TestClient

import main

if __name__ == "__main__":  # the sandbox's processes start by importing this module
    digit = open({png!r}, "rb").read()
    with TestClient(main.app) as client:
        for url in ("/predict", "/predict?explain=true", "/predict/number", "/upload"):
            answer = client.post(url, files={{"file": ("digit.png", digit, "image/png")}})
            assert answer.status_code == 200, (url, answer.status_code, answer.text)
        assert client.get("/model").json()["parameters"] == 235_146
"""


def without_torch(tmp_path) -> dict[str, str]:
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('serving must not load torch')\n")
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}


def test_the_service_answers_without_torch(tmp_path, mnist_test):
    png = tmp_path / "digit.png"
    png.write_bytes(encode(mnist_test[0][0]))
    script = tmp_path / "app.py"
    script.write_text(APP.format(png=str(png)))
    r = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=without_torch(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]


def test_predict_py_reads_files_without_torch(tmp_path, mnist_test):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"digit{i}.png")
        paths[-1].write_bytes(encode(mnist_test[0][i]))
    r = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), *map(str, paths)],
        env=without_torch(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert [line.split(": ")[1][0] for line in r.stdout.splitlines()] == [str(d) for d in mnist_test[1][:3]]
