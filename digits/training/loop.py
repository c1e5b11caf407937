"""One epoch (train_one_epoch), evaluation, and fit(): the epochs, with the moving average kept at its best on
validation. The teacher's softened outputs and the outliers' push towards doubt join the loss here."""

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from digits.training.augment import augment
from digits.training.recipe import Recipe
from digits.training.splits import Splits, normalize


def train_one_epoch(
    model: nn.Module,
    ema: AveragedModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: Recipe,
    g: torch.Generator,
    teacher: nn.Module | None,
    desc: str,
    not_digits: torch.Tensor | None = None,
    pens: torch.Tensor | None = None,
    quiet: bool = False,
) -> tuple[float, float]:
    """One epoch over (x, y) in shuffled, freshly augmented batches; returns mean training loss and accuracy.

    With pens (x drawn again with other pens), each digit of a batch is taken from there with chance recipe.pens.

    With not_digits (outliers.py), each batch also takes half as many of them, augmented the same way, and
    the loss pushes the model's answer on them towards uniform (outlier exposure)."""
    model.train()
    order = torch.randperm(len(x), device=x.device, generator=g)
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for idx in tqdm(order.split(recipe.batch_size), desc=desc, leave=False, disable=quiet):
        batch = x[idx]
        if pens is not None:
            redrawn = torch.rand(len(idx), 1, 1, 1, device=x.device, generator=g) < recipe.pens
            batch = torch.where(redrawn, pens[idx], batch)
        if not_digits is not None:
            picked = torch.randint(len(not_digits), (len(idx) // 2,), device=x.device, generator=g)
            batch = torch.cat([batch, not_digits[picked]])
        inputs = normalize(augment(batch, g, recipe))
        logits = model(inputs)
        if not_digits is not None:
            # Cross-entropy against the uniform answer: the mean of the negative log-probabilities.
            away = -F.log_softmax(logits[len(idx) :], 1).mean()
            inputs, logits = inputs[: len(idx)], logits[: len(idx)]
        loss = F.cross_entropy(logits, y[idx], label_smoothing=recipe.label_smoothing)
        if teacher is not None:
            t = recipe.kd_temperature
            with torch.no_grad():
                soft = F.log_softmax(teacher(inputs) / t, dim=1)
            distill = F.kl_div(F.log_softmax(logits / t, dim=1), soft, reduction="batchmean", log_target=True)
            loss = (1 - recipe.kd_alpha) * loss + recipe.kd_alpha * t * t * distill
        if not_digits is not None:
            loss = loss + recipe.outlier_weight * away
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        ema.update_parameters(model)
        total_loss += loss.detach() * len(idx)
        correct += (logits.argmax(1) == y[idx]).sum()
    return total_loss.item() / len(x), correct.item() / len(x)


@torch.no_grad()  # not inference_mode: calibration fits a temperature on these with autograd
def logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """The model's logits for x (B×1×28×28 in [0,1]), on the CPU."""
    model.eval()
    return torch.cat([model(normalize(x[i : i + batch_size])).cpu() for i in range(0, len(x), batch_size)])


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of model on (x, y), with x as B×1×28×28 in [0,1]."""
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        logits = model(normalize(x[i : i + batch_size]))
        loss += F.cross_entropy(logits, y[i : i + batch_size], reduction="sum").item()
        correct += (logits.argmax(1) == y[i : i + batch_size]).sum().item()
    return loss / len(x), correct / len(x)


Tensors = tuple[torch.Tensor, ...] | list[torch.Tensor]


def ema_update(decay: float) -> Callable[[Tensors, Tensors, torch.Tensor | int], None]:
    """An EMA step whose decay ramps up, so a short run averages what it trained rather than the initial weights."""

    def update(averaged: Tensors, current: Tensors, n: torch.Tensor | int) -> None:
        steps = int(n)
        d = min(decay, (1 + steps) / (10 + steps))
        torch._foreach_lerp_(averaged, current, 1 - d)

    return update


def fit(
    model: nn.Module,
    data: Splits,
    recipe: Recipe,
    epochs: int,
    lr: float,
    g: torch.Generator,
    teacher: nn.Module | None = None,
    name: str = "mlp",
    not_digits: torch.Tensor | None = None,
    quiet: bool = False,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Train model, keeping the moving average with the best validation accuracy (MNIST's and as uploads, averaged);
    returns its state and the history."""
    ema = AveragedModel(model, multi_avg_fn=ema_update(recipe.ema_decay))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=recipe.weight_decay)
    steps = math.ceil(len(data.train_x) / recipe.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps)
    best_acc, best_state, history = -1.0, None, []
    bar = tqdm(range(1, epochs + 1), desc=name, disable=quiet)
    for epoch in bar:
        train_loss, train_acc = train_one_epoch(
            model,
            ema,
            optimizer,
            scheduler,
            data.train_x,
            data.train_y,
            recipe,
            g,
            teacher,
            f"{name} epoch {epoch}/{epochs}",
            not_digits,
            data.train_pens,
            quiet,
        )
        val_loss, val_acc = evaluate(ema.module, data.val_x, data.val_y)
        real_acc = evaluate(ema.module, data.val_real_x, data.val_real_y)[1]
        history.append(
            {
                "epoch": epoch,
                "train_loss": round(train_loss, 5),
                "train_acc": round(train_acc, 5),
                "val_loss": round(val_loss, 5),
                "val_acc": val_acc,
                "real_val_acc": real_acc,
            }
        )
        bar.set_postfix(loss=f"{train_loss:.4f}", val_acc=f"{val_acc:.2%}", real=f"{real_acc:.2%}")
        if quiet:
            print(
                f"{name} epoch {epoch}: loss {train_loss:.4f}, validation accuracy {val_acc:.2%}, "
                f"as uploads {real_acc:.2%}",
                flush=True,
            )
        # MNIST's validation and its digits drawn as uploads weigh the same: either alone misleads.
        if (val_acc + real_acc) / 2 >= best_acc:
            best_acc = (val_acc + real_acc) / 2
            best_state = {k: v.detach().clone() for k, v in ema.module.state_dict().items()}
    assert best_state is not None, "fit() runs at least one epoch"
    return best_state, history
