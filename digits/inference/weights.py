"""The weights file: safetensors, with its sha256 recorded beside it, read as numpy arrays without pickle. Serving
needs no torch: importing it took 1.8 of the 2.3 s that `import digits.inference.predictor` took."""

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save

from digits.paths import WEIGHTS

DEFAULT_WEIGHTS = WEIGHTS / "mnist_mlp.safetensors"


class WeightsError(RuntimeError):
    """The weights file is missing, corrupt, or not the one recorded."""


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_id(sha256: str) -> str:
    """How answers, corrections and the review name weights: the first 12 characters of their sha256, as git
    names commits. /model gives the whole."""
    return sha256[:12]


def sha256_path(weights: Path) -> Path:
    """Where a weights file's sha256 is recorded, in `sha256sum` format."""
    return weights.with_suffix(".sha256")


def save_weights(state: Mapping[str, np.ndarray], path: Path, metadata: dict[str, str]) -> None:
    """Write weights by name (model.numpy_state) as safetensors, and record their sha256 beside them, for
    Predictor to check."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written by Python, not safetensors' save_file, which made the file 0600 whatever the umask: an image built
    # after training then held weights that its unprivileged user couldn't read, and every worker failed to start.
    path.write_bytes(save({k: np.ascontiguousarray(v) for k, v in state.items()}, metadata=metadata))
    sha256_path(path).write_text(f"{file_sha256(path)}  {path.name}\n")


def load_state(path: Path = DEFAULT_WEIGHTS) -> dict[str, np.ndarray]:
    """The weights of a safetensors file by name, as numpy arrays."""
    return load_file(str(path))
