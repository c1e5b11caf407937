"""Confidence that means what it says: temperature scaling, ECE, and the "uncertain" and "not a digit" thresholds.

All of it is fitted on the validation split; the test set is only measured.
"""

import itertools
from typing import Any

import torch
import torch.nn.functional as F

from digits.inference.predictor import NOT_A_DIGIT_SHARE, UNCERTAIN_SHARE


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
    test_logits: torch.Tensor, test_y: torch.Tensor, temperature: float, below: tuple[float, float]
) -> dict[str, float]:
    """What the weights record of the test set: accuracy, ECE before and after the temperature, share uncertain
    under `below`, the uncertain and not-a-digit thresholds.

    Computed the same way when training writes them and when `make claims` checks them."""
    before, after = F.softmax(test_logits, 1), F.softmax(test_logits / temperature, 1)
    return {
        "test_accuracy": round(float((after.argmax(1) == test_y).float().mean()), 4),
        "ece_before": round(expected_calibration_error(before, test_y), 5),
        "ece_after": round(expected_calibration_error(after, test_y), 5),
        "test_flagged_uncertain": round(float(flagged(test_logits, temperature, below).float().mean()), 4),
    }


def energy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The energy score of each row of logits, as Predictor.classify computes it for "not a digit"."""
    return temperature * torch.logsumexp(logits / temperature, 1)


def flagged(logits: torch.Tensor, temperature: float, below: tuple[float, float]) -> torch.Tensor:
    """Which answers are uncertain, as the service gives them: the confidence under the first threshold of
    `below`, or the energy under the second."""
    confidence = F.softmax(logits / temperature, 1).max(1).values
    return (confidence < below[0]) | (energy(logits, temperature) < below[1])


def thresholds(logits: torch.Tensor, temperature: float) -> tuple[float, float]:
    """The confidence under which UNCERTAIN_SHARE of these (validation) digits fall, and the energy under which
    NOT_A_DIGIT_SHARE of them do."""
    confidence = F.softmax(logits / temperature, 1).max(1).values
    return (
        float(torch.quantile(confidence, UNCERTAIN_SHARE)),
        float(torch.quantile(energy(logits, temperature), NOT_A_DIGIT_SHARE)),
    )
