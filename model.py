"""The network: a 784-256-128-10 multilayer perceptron."""

import torch
import torch.nn.functional as F
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
