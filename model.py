"""The network: a 784-256-128-10 multilayer perceptron."""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn


class MLP(nn.Module):
    """Two ReLU hidden layers of 256 and 128 units; `forward` returns logits (softmax is the caller's)."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 10)
        # Dropout has no parameters, so the saved weights are the same with or without it.
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = self.dropout(F.relu(self.fc1(x)))
        x = self.dropout(F.relu(self.fc2(x)))
        return self.fc3(x)


def load_model(path: Path) -> MLP:
    """The MLP with weights from a safetensors file (no pickle involved)."""
    return model_from_state(load_file(str(path)))


def model_from_state(state: Mapping[str, torch.Tensor | np.ndarray]) -> MLP:
    """The MLP with these weights, by name: torch's, or numpy's as serving holds them (Predictor.state)."""
    model = MLP()
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    return model.eval()


def numpy_state(state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A state dict's weights as numpy arrays, as serving reads and weights.save_weights writes them."""
    return {k: v.detach().cpu().numpy() for k, v in state.items()}
