"""Confidence that means what it says: temperature scaling, ECE, and the "uncertain" threshold.

All of it is fitted on the validation split; the test set is only measured.
"""

import itertools
from typing import Any

import torch
import torch.nn.functional as F

from digits.inference.predictor import UNCERTAIN_SHARE


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimizes the NLL of softmax(logits / T) (Guo et al., 2017)."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def reliability(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> list[dict[str, Any]]:
    """Per confidence bin: its count, mean confidence and accuracy."""
    conf, pred = probs.max(1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        mask = (conf > lo) & (conf <= hi)
        n = int(mask.sum())
        out.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "count": n,
                "confidence": float(conf[mask].mean()) if n else 0.0,
                "accuracy": float(correct[mask].mean()) if n else 0.0,
            }
        )
    return out


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE: the count-weighted gap between confidence and accuracy over equal-width bins."""
    total = len(labels)
    return sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in reliability(probs, labels, bins))


def test_figures(
    test_logits: torch.Tensor, test_y: torch.Tensor, temperature: float, uncertain_below: float
) -> dict[str, float]:
    """What the weights record of the test set: accuracy, ECE before and after the temperature, share uncertain.

    Computed the same way when training writes them and when `make claims` checks them."""
    before, after = F.softmax(test_logits, 1), F.softmax(test_logits / temperature, 1)
    return {
        "test_accuracy": round(float((after.argmax(1) == test_y).float().mean()), 4),
        "ece_before": round(expected_calibration_error(before, test_y), 5),
        "ece_after": round(expected_calibration_error(after, test_y), 5),
        "test_flagged_uncertain": round(float((after.max(1).values < uncertain_below).float().mean()), 4),
    }


def uncertain_threshold(probs: torch.Tensor, share: float = UNCERTAIN_SHARE) -> float:
    """The confidence below which `share` of these (validation) digits fall."""
    return float(torch.quantile(probs.max(1).values, share))
