"""Figures recorded with weights, measured again: preprocessing changes what uploads become, and figures recorded
before the change would no longer be what users get, nor agree with the report."""

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from digits.inference.predictor import Predictor
from digits.inference.weights import save_weights
from digits.training import dataset, report
from digits.training.loop import logits
from digits.training.splits import to_float


def remeasure(weights: Path, report_dir: Path | None, digits: int) -> None:
    """Record the served figures of --weights again, drawn as training drew them, and write its report again
    with them: preprocessing changes what uploads become, and figures recorded before the change would no
    longer be what users get, nor agree with the report."""
    predictor = Predictor(weights)
    images, labels = dataset.load(train=False)
    seed = int(predictor.metadata.get("seed", 0))
    served, scores = report.served_figures(predictor, images.numpy(), labels.numpy(), seed, digits)
    metadata = predictor.metadata | {k: json.dumps(v) for k, v in served.items()}
    save_weights(load_file(str(weights)), weights, metadata)
    print(f"recorded in {weights}: {json.dumps(served)}")
    if report_dir is None:
        return
    # The report's summary is what finish.finish() recorded, less what describes the run rather than its results.
    run = {"architecture", "epochs", "seed", "train_images", "torch_version", "data_md5", "recipe", "history"}
    # The headline first, as training writes it; safetensors keeps its metadata in no particular order.
    keys = sorted(metadata.keys() - run, key=lambda k: (k != "test_accuracy", k))
    summary = {k: metadata[k] if k == "device" else json.loads(metadata[k]) for k in keys}
    x = to_float(images, torch.device("cpu"))
    test_logits = logits(predictor.model, x)
    before, after = F.softmax(test_logits, 1), F.softmax(test_logits / predictor.temperature, 1)
    history = json.loads(metadata["history"])
    report.write_report(report_dir, summary, history, images.numpy(), labels, before, after, scores)
    print(f"wrote the report to {report_dir}")
