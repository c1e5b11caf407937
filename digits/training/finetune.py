"""Learning from users: fine-tuning on the corrections an operator accepted, the corrections exported as IDX
files, and promoting fine-tuned weights to the served ones. Corrections come from strangers: fine-tuned weights
wait beside the served ones until an operator promotes them."""

import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from digits.feedback.export import FolderError, read
from digits.feedback.store import FeedbackStore, tally
from digits.inference.predictor import Predictor
from digits.inference.weights import DEFAULT_WEIGHTS, WeightsError, sha256_path
from digits.training import dataset
from digits.training.finish import Output, finish
from digits.training.loop import evaluate, fit
from digits.training.recipe import Recipe
from digits.training.splits import Splits, to_float
from model import MLP, load_model

# Fine-tuned weights wait here, beside the served ones, until `train.py promote`: corrections come from strangers.
FEEDBACK_WEIGHTS = DEFAULT_WEIGHTS.with_name("feedback.safetensors")
# Fine-tuning on corrections may cost MNIST validation at most this much, or its weights are not written.
MAX_VALIDATION_LOSS = 0.001


@dataclass(frozen=True)
class Corrections:
    """What fine-tuning learns from: each corrected digit as the model saw it (28x28 uint8) with its right label,
    and for each model, how many of its answers were corrected and how many of those the user confirmed."""

    digits: list[tuple[np.ndarray, int]]
    by_model: dict[str, tuple[int, int]]


def from_database(url: str) -> Corrections:
    """The accepted corrections in the database, whole numbers' digits included."""
    with FeedbackStore(url) as store:
        return Corrections(store.all(), store.by_model())


def from_folder(folder: Path) -> Corrections:
    """The corrections in a folder that `review --export` wrote: the same digits, in the same order."""
    try:
        found = read(folder)
    except FolderError as e:
        sys.exit(f"Nothing learned: {e}")
    return Corrections(
        [digit for e in found for digit in e.digits], tally((e.model, e.predicted, e.label) for e in found)
    )


def as_tensors(corrections: Corrections, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The corrected digits as N×1×28×28 in [0,1], and their labels."""
    if not corrections.digits:
        return torch.zeros(0, 1, 28, 28, device=device), torch.zeros(0, dtype=torch.long, device=device)
    images = np.stack([pixels for pixels, _ in corrections.digits])
    labels = [label for _, label in corrections.digits]
    return to_float(torch.from_numpy(images), device), torch.tensor(labels, device=device)


def accuracy_by_model(corrections: Corrections) -> None:
    """How each model fared on what users corrected: its answers that the accepted corrections confirmed."""
    for model, (n, right) in sorted(corrections.by_model.items()):
        print(f"model {model}: {n} accepted corrections of its answers, {right} confirming them ({right / n:.0%})")


def nothing_to_learn(database_url: str | None) -> None:
    """Says why there is nothing to fine-tune on, before MNIST is loaded; database_url is None for a folder."""
    if database_url is None:
        print("The folder holds no corrections, so there is nothing to learn from.")
        return
    with FeedbackStore(database_url) as store:
        waiting = len(store.listed())
    print(
        f"There are no accepted corrections in {database_url}, so there is nothing to learn from. "
        f"They come from the page's 'Wrong?' buttons and from POST /feedback; {waiting} wait for an "
        "operator's review: python -m digits.feedback.review"
    )


def learn_from_feedback(
    recipe: Recipe,
    data: Splits,
    corrections: tuple[torch.Tensor, torch.Tensor],
    g: torch.Generator,
    weights: Path,
    output: Output,
    quiet: bool,
) -> None:
    """Fine-tune weights on MNIST plus the corrections (as_tensors()), oversampled; the oversampling is chosen
    on validation.

    A fifth of the corrections is held out and only measured; another fifth is their validation split.
    The candidate with the fewest mistakes on both validation sets together wins, each image counting
    once, and the current weights are a candidate too.
    """
    x, y = corrections
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(recipe.seed)).to(x.device)
    k = max(1, len(x) // 5)
    held, val, fit_idx = order[:k], order[k : 2 * k], order[2 * k :]

    def mistakes(model: nn.Module) -> tuple[float, float, float]:
        mnist_val, feedback_val = evaluate(model, data.val_x, data.val_y)[1], evaluate(model, x[val], y[val])[1]
        return (1 - mnist_val) * len(data.val_x) + (1 - feedback_val) * len(val), mnist_val, feedback_val

    base = load_model(weights).to(x.device)
    before = {
        "mnist_test": evaluate(base, data.test_x, data.test_y)[1],
        "feedback_heldout": evaluate(base, x[held], y[held])[1],
    }
    print(f"{len(x)} corrections: {len(fit_idx)} to learn from, {len(val)} to choose with, {len(held)} held out")
    best_state, best_history, chosen = base.state_dict(), [], 0
    fewest, mnist_val, feedback_val = mistakes(base)
    print(f"current weights: MNIST validation {mnist_val:.2%}, corrections validation {feedback_val:.2%}")
    start = time.perf_counter()
    not_digits = data.outlier_x if recipe.outliers else None  # fine-tuning keeps the doubt of what isn't a digit
    for repeat in (4, 16, 64):
        model = MLP(dropout=recipe.dropout).to(x.device)
        model.load_state_dict(base.state_dict())
        # A correction is its own drawing: it came with its writer's pen.
        pens = None if data.train_pens is None else torch.cat([data.train_pens] + [x[fit_idx]] * repeat)
        mixed = replace(
            data,
            train_x=torch.cat([data.train_x] + [x[fit_idx]] * repeat),
            train_y=torch.cat([data.train_y] + [y[fit_idx]] * repeat),
            train_pens=pens,
        )
        name = f"fine-tune x{repeat}"
        state, history = fit(
            model, mixed, recipe, recipe.epochs, recipe.lr / 10, g, name=name, not_digits=not_digits, quiet=quiet
        )
        model.load_state_dict(state)
        count, mnist_val, feedback_val = mistakes(model)
        print(f"oversampled {repeat}x: MNIST validation {mnist_val:.2%}, corrections validation {feedback_val:.2%}")
        if count < fewest:
            best_state, fewest, best_history, chosen = state, count, history, repeat
    if not chosen:
        print("No fine-tuning beat the current weights on validation; they stay as they are.")
        return
    model = MLP().to(x.device)
    model.load_state_dict(best_state)
    lost = evaluate(base, data.val_x, data.val_y)[1] - evaluate(model, data.val_x, data.val_y)[1]
    if lost > MAX_VALIDATION_LOSS:
        # The corrections pull against MNIST itself: wrong labels, or a kind of writing MNIST never had.
        sys.exit(
            f"Not written: fine-tuning on the corrections loses {lost:.2%} on MNIST validation, over the "
            f"{MAX_VALIDATION_LOSS:.1%} allowed. Review the accepted corrections "
            "(python -m digits.feedback.review --list accepted)."
        )
    after = {
        "mnist_test": evaluate(model, data.test_x, data.test_y)[1],
        "feedback_heldout": evaluate(model, x[held], y[held])[1],
    }
    print(
        f"chose {chosen}x oversampling. MNIST test: {before['mnist_test']:.2%} -> {after['mnist_test']:.2%}; "
        f"held-out corrections: {before['feedback_heldout']:.2%} -> {after['feedback_heldout']:.2%}"
    )
    results = {"feedback": {"corrections": len(x), "oversampling": chosen, "before": before, "after": after}}
    finish(best_state, best_history, data, recipe, output, time.perf_counter() - start, results)
    if output.weights != DEFAULT_WEIGHTS:
        print(f"The served weights are unchanged. To serve these: train.py promote {output.weights}")


def promote(path: Path) -> None:
    """Make fine-tuned weights the served ones: checked as the service checks them, then swapped in whole."""
    try:
        predictor = Predictor(path)
    except WeightsError as e:
        sys.exit(f"Not promoted: {e}")
    if "feedback" not in predictor.metadata:
        sys.exit(f"Not promoted: {path} was not made by train.py feedback")
    staged = DEFAULT_WEIGHTS.with_name(f".{DEFAULT_WEIGHTS.name}.new")
    shutil.copyfile(path, staged)
    staged.replace(DEFAULT_WEIGHTS)  # whole, never half-written
    sha256_path(DEFAULT_WEIGHTS).write_text(f"{predictor.sha256}  {DEFAULT_WEIGHTS.name}\n")
    print(
        f"{DEFAULT_WEIGHTS} is now {path} (model {predictor.model_id}). To serve it without a restart, send serve.py "
        "SIGHUP (kill -HUP <its pid>): its workers are replaced one at a time, none dropping a request. In "
        "Kubernetes, build an image with it and roll it out (docs/operations.md)."
    )


def export_feedback(folder: Path, database_url: str) -> None:
    """The corrections in MNIST's IDX layout, so that any MNIST reader can load them."""
    x, y = as_tensors(from_database(database_url), torch.device("cpu"))
    folder.mkdir(parents=True, exist_ok=True)
    dataset.write_idx(folder / "feedback-images-idx3-ubyte", (x[:, 0] * 255).round().byte().numpy())
    dataset.write_idx(folder / "feedback-labels-idx1-ubyte", y.byte().numpy())
    print(f"wrote {len(x)} corrections to {folder}")
