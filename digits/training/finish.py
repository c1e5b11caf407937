"""The end of a run: calibration fitted on validation, figures measured on test, and the weights written with
their metadata (the recipe, the figures, the history) and the training report."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digits.inference.predictor import Predictor
from digits.inference.weights import save_weights
from digits.training import dataset, report
from digits.training.calibration import fit_temperature, flagged, test_figures, thresholds
from digits.training.loop import logits
from digits.training.recipe import Recipe
from digits.training.splits import Splits
from model import MLP, numpy_state


@dataclass(frozen=True)
class Output:
    """Where a run writes: the weights, and the report (None: no report, nor the figures it measures)."""

    weights: Path
    report: Path | None
    report_digits: int = 2000  # test digits for the report's upload and rejection figures


def validation_digits(model: nn.Module, data: Splits, val_logits: torch.Tensor) -> torch.Tensor:
    """The logits of every validation digit, MNIST's and those drawn as uploads: the thresholds are chosen on
    both, since MNIST's alone would flag a real pen's digits far more often."""
    return torch.cat([val_logits, logits(model, data.val_real_x)])


def chosen_on_validation(
    model: nn.Module, data: Splits, val_logits: torch.Tensor, test_logits: torch.Tensor, temperature: float
) -> dict[str, float]:
    """The uncertain and not-a-digit thresholds chosen on validation, the share of validation digits they flag
    together, and what they make of the test set (test_figures) and of the held-out outliers: what validation
    says of the not-a-digit training. Training records them, and `train.py remeasure` again when the
    preprocessing changes what validation's uploads become."""
    digits = validation_digits(model, data, val_logits)
    # Rounded as the metadata records them, so that every figure below is what the service answers with them.
    uncertain_below, not_a_digit_below = thresholds(digits, temperature)
    below = round(uncertain_below, 4), round(not_a_digit_below, 4)
    assert data.val_outlier_x is not None, "the splits come with their outliers"
    outliers = flagged(logits(model, data.val_outlier_x), temperature, below)
    return {
        "uncertain_below": below[0],
        "not_a_digit_below": below[1],
        "val_flagged": round(float(flagged(digits, temperature, below).float().mean()), 4),
        **test_figures(test_logits, data.test_y.cpu(), temperature, below),
        "val_outliers_flagged": round(float(outliers.float().mean()), 4),
    }


def metadata_of(summary: dict[str, Any], recipe: Recipe, history: list[dict[str, Any]], images: int) -> dict[str, str]:
    """What the weights carry: safetensors keeps strings only, so numbers, lists and objects go as JSON."""
    return {
        "architecture": "MLP 784-256-128-10 (ReLU)",
        **{
            k: f"{v:.4f}" if isinstance(v, float) else v if isinstance(v, str) else json.dumps(v)
            for k, v in summary.items()
        },
        "epochs": str(recipe.epochs),
        "seed": str(recipe.seed),
        "train_images": str(images),
        "torch_version": torch.__version__,
        "data_md5": json.dumps(dataset.IDX_MD5),
        "recipe": recipe.to_json(),
        "history": json.dumps(history),
    }


def finish(
    state: dict[str, torch.Tensor],
    history: list[dict[str, Any]],
    data: Splits,
    recipe: Recipe,
    output: Output,
    seconds: float,
    results: dict[str, Any],
) -> None:
    """Calibrate on validation, measure on test, and write the weights, their metadata and the report."""
    model = MLP().to(data.val_x.device)
    model.load_state_dict(state)
    best = max(history, key=lambda h: (h["val_acc"] + h["real_val_acc"], h["epoch"]))
    # Calibration is fitted on validation; the test set is only measured.
    val_logits, test_logits = logits(model, data.val_x), logits(model, data.test_x)
    temperature = fit_temperature(val_logits, data.val_y.cpu())
    measured = chosen_on_validation(model, data, val_logits, test_logits, temperature)
    test_y = data.test_y.cpu()
    print(
        f"best validation accuracy {best['val_acc']:.2%} at epoch {best['epoch']}; "
        f"test accuracy {measured['test_accuracy']:.2%}; {measured['val_outliers_flagged']:.1%} of validation "
        f"outliers flagged; {seconds:.0f} s on {model.fc1.weight.device}"
    )
    summary = {
        **measured,
        "val_accuracy": best["val_acc"],
        "real_val_accuracy": best["real_val_acc"],
        "best_epoch": best["epoch"],
        "train_seconds": round(seconds, 1),
        "device": str(model.fc1.weight.device),
        "temperature": round(temperature, 4),
        **results,
    }
    metadata = metadata_of(summary, recipe, history, len(data.train_x))
    if output.report is not None:
        # What the served model does with uploads and with things that are not digits; recorded with the weights.
        predictor = Predictor.from_state(numpy_state(state), metadata)
        all_images = (data.test_x[:, 0].cpu().numpy() * 255).round().astype(np.uint8)
        served, scores = report.served_figures(predictor, all_images, test_y.numpy(), recipe.seed, output.report_digits)
        summary.update(served)
        metadata.update({k: json.dumps(v) for k, v in served.items()})
        before, after = F.softmax(test_logits, 1), F.softmax(test_logits / temperature, 1)
        report.write_report(output.report, summary, history, all_images, test_y, before, after, scores)
        print(f"wrote the report to {output.report}")
    save_weights(numpy_state(state), output.weights, metadata)
    print(f"wrote {output.weights}")
