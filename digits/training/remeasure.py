"""Figures recorded with weights, measured again: preprocessing changes what uploads become, and figures recorded
before the change would no longer be what users get, nor agree with the report."""

import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from digits.inference.predictor import Predictor
from digits.inference.weights import load_state, save_weights
from digits.training import dataset, report
from digits.training.finish import chosen_on_validation
from digits.training.loop import logits
from digits.training.recipe import Recipe
from digits.training.splits import load_splits, with_outliers
from model import model_from_state


def remeasure(weights: Path, report_dir: Path | None, digits: int) -> None:
    """Choose the uncertain threshold again on validation, record the served figures of --weights again, drawn
    as training drew them, and write its report again with them: preprocessing changes what uploads become,
    validation's among them, and figures recorded before the change would no longer be what users get, nor
    agree with the report."""
    state = load_state(weights)
    predictor = Predictor(weights)
    model = model_from_state(state)
    # Validation and its held-out outliers as training drew them, without what training alone needs.
    recipe = dataclasses.replace(Recipe.from_json(predictor.metadata["recipe"]), pens=0, subset=0, outliers=0)
    data = with_outliers(recipe, load_splits(recipe, torch.device("cpu")))
    val_logits, test_logits = logits(model, data.val_x), logits(model, data.test_x)
    chosen = chosen_on_validation(model, data, val_logits, test_logits, predictor.temperature)
    metadata = predictor.metadata | {k: f"{v:.4f}" for k, v in chosen.items()}
    predictor = Predictor.from_state(state, metadata)
    images, labels = dataset.load(train=False)
    served, scores = report.served_figures(predictor, images.numpy(), labels.numpy(), recipe.seed, digits)
    metadata |= {k: json.dumps(v) for k, v in served.items()}
    save_weights(state, weights, metadata)
    print(f"recorded in {weights}: {json.dumps(chosen | served)}")
    if report_dir is None:
        return
    # The report's summary is what finish.finish() recorded, less what describes the run rather than its results.
    run = {"architecture", "epochs", "seed", "train_images", "torch_version", "data_md5", "recipe", "history"}
    # The headline first, as training writes it; safetensors keeps its metadata in no particular order.
    keys = sorted(metadata.keys() - run, key=lambda k: (k != "test_accuracy", k))
    summary = {k: metadata[k] if k == "device" else json.loads(metadata[k]) for k in keys}
    before, after = F.softmax(test_logits, 1), F.softmax(test_logits / predictor.temperature, 1)
    history = json.loads(metadata["history"])
    report.write_report(report_dir, summary, history, images.numpy(), labels, before, after, scores)
    print(f"wrote the report to {report_dir}")
