"""The weights file: safetensors, with its sha256 recorded beside it, loaded into the MLP without pickle."""

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from digits.paths import WEIGHTS
from model import MLP

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


def save_weights(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write safetensors weights and record their sha256 beside them, for Predictor to check."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    sha256_path(path).write_text(f"{file_sha256(path)}  {path.name}\n")


def load_model(path: Path = DEFAULT_WEIGHTS) -> MLP:
    """The MLP with weights from a safetensors file (no pickle involved)."""
    return model_from_state(load_file(str(path)))


def model_from_state(state: dict[str, torch.Tensor]) -> MLP:
    model = MLP()
    model.load_state_dict(state)
    return model.eval()
