"""The service refuses to start on weights it can't trust, and says which file and what to do."""

import os
import shutil
import stat

import numpy as np
import pytest
from safetensors.numpy import save_file

from digits.inference.predictor import Predictor
from digits.inference.weights import (
    DEFAULT_WEIGHTS,
    WeightsError,
    file_sha256,
    load_state,
    save_weights,
    sha256_path,
)


def copy_weights(tmp_path):
    dst = tmp_path / "w.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, dst)
    shutil.copy(sha256_path(DEFAULT_WEIGHTS), sha256_path(dst))
    return dst


def test_shipped_weights_match_their_recorded_sha256():
    assert sha256_path(DEFAULT_WEIGHTS).read_text().split()[0] == file_sha256(DEFAULT_WEIGHTS)
    assert Predictor().sha256 == file_sha256(DEFAULT_WEIGHTS)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"nope.safetensors is missing; run `python train.py`"):
        Predictor(tmp_path / "nope.safetensors")


def test_changed_file_does_not_match_its_sha256(tmp_path):
    w = copy_weights(tmp_path)
    data = bytearray(w.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    w.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match the sha256 recorded"):
        Predictor(w)


def test_missing_record(tmp_path):
    w = copy_weights(tmp_path)
    sha256_path(w).unlink()
    with pytest.raises(WeightsError, match="no recorded sha256"):
        Predictor(w)


def test_corrupt_file_with_a_matching_record(tmp_path):
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    sha256_path(w).write_text(f"{file_sha256(w)}  w.safetensors\n")
    with pytest.raises(WeightsError, match=r"is corrupt.*python train\.py"):
        Predictor(w)


@pytest.mark.parametrize("change", ["a layer missing", "a layer turned", "a layer in float64"])
def test_weights_of_another_network_are_refused(tmp_path, change):
    state = load_state(DEFAULT_WEIGHTS)
    if change == "a layer missing":
        del state["fc2.weight"], state["fc2.bias"]
    elif change == "a layer turned":
        state["fc2.weight"] = np.ascontiguousarray(state["fc2.weight"].T)
    else:
        state["fc3.weight"] = state["fc3.weight"].astype(np.float64)
    w = tmp_path / "w.safetensors"
    save_file(state, str(w))
    sha256_path(w).write_text(f"{file_sha256(w)}  w.safetensors\n")
    with pytest.raises(WeightsError, match=r"is corrupt.*python train\.py"):
        Predictor(w)


def test_written_weights_are_as_readable_as_any_file_the_user_writes(tmp_path):
    """safetensors' save_file made them 0600, so an image built after training couldn't read them."""
    w = tmp_path / "w.safetensors"
    save_weights(load_state(), w, {"note": "a copy"})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(w.stat().st_mode) == 0o666 & ~mask
    assert Predictor(w).forward.layers[0][0].shape == (784, 256)
