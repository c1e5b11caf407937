"""The server refuses to start on weights it can't trust."""

import os
import subprocess
import sys

from tests.helpers import ROOT, free_port


def test_server_does_not_start_without_weights(tmp_path):
    env = {**os.environ, "WEIGHTS_PATH": str(tmp_path / "gone.safetensors")}
    r = subprocess.run(
        [sys.executable, "-m", "uvicorn", "main:app", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert f"weights file {tmp_path / 'gone.safetensors'} is missing; run `python train.py`" in r.stderr
    assert "Application startup failed" in r.stderr
