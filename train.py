"""Train the 784-256-128-10 MLP on MNIST and write weights/mnist_mlp.safetensors.

    python train.py                          # the shipped recipe (seed 0): CNN teacher, then the distilled MLP
    python train.py --fast                   # no teacher, fewer epochs: past 99% in a few minutes on 2 cores
    python train.py --epochs 1 --subset 2000 --out /tmp/smoke.safetensors
    python train.py --eval-only [--weights weights/mnist_mlp.safetensors]
    python train.py --remeasure              # record the upload figures again after a preprocessing change
    python train.py --feedback               # fine-tune on the corrections an operator accepted (review.py)
    python train.py --promote weights/feedback.safetensors   # serve those weights from the next start
    python train.py --export-feedback out/   # the accepted corrections as MNIST-style IDX files

The data is fetched and verified first if it is missing (see dataset.py).
5,000 training images are held out for validation. 1,000 of them are also
drawn as people's uploads arrive (redraw.py: other pens, the page's canvas,
photos of paper) and read through the service's preprocessing; the two halves
pick every setting and the checkpoint together. The test set is only ever used
to report the final accuracy.

Each training digit is also drawn once more with another pen, from a
ballpoint's to a marker's (redraw.redrawn()); a share of every batch takes that
drawing instead. Augmentation runs on whole batches on the training device: a
random affine transform and an elastic distortion composed into one sampling
grid (so one `grid_sample` moves every pixel once), then optionally random
stroke thickening or thinning. The teacher, a small CNN (teacher.py), trains on the same
augmentation; the MLP then learns from its softened outputs on the very
batches it sees, mixed with the true labels.
"""

import argparse
import functools
import itertools
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

import dataset
import outliers
import redraw
import report
from calibration import fit_temperature, test_figures, uncertain_threshold
from feedback import DEFAULT_DATABASE_URL, FeedbackStore
from model import MLP
from predict import DEFAULT_WEIGHTS, Predictor, WeightsError, load_model, save_weights, sha256_path
from preprocess import normalize
from teacher import TeacherCNN

REPORT = Path(__file__).resolve().parent / "reports" / "latest"
# Fine-tuned weights wait here, beside the served ones, until --promote: corrections come from strangers.
FEEDBACK_WEIGHTS = DEFAULT_WEIGHTS.with_name("feedback.safetensors")
# Fine-tuning on corrections may cost MNIST validation at most this much, or its weights are not written.
MAX_VALIDATION_LOSS = 0.001
VAL_OUTLIERS = 2000  # outliers held out, as validation digits are, to measure how many are flagged


@functools.cache
def _grid_basis(device: torch.device) -> torch.Tensor:
    """784×19: each pixel's homogeneous coordinates (x, y, 1), then its bicubic weights on a 4×4 field.

    A batch's sampling grid is then one matrix product with its affine and elastic parameters; F.affine_grid
    and F.interpolate on such small tensors cost several times more on a CPU.
    """
    c = (torch.arange(28, device=device, dtype=torch.float32) * 2 + 1) / 28 - 1  # pixel centres, align_corners=False
    ys, xs = torch.meshgrid(c, c, indexing="ij")
    coords = torch.stack([xs.flatten(), ys.flatten(), torch.ones(784, device=device)], 1)
    field = F.interpolate(
        torch.eye(16, device=device).view(16, 1, 4, 4), size=(28, 28), mode="bicubic", align_corners=True
    ).view(16, 784)
    return torch.cat([coords, field.T], 1)


def dilate(x: torch.Tensor) -> torch.Tensor:
    """3x3 grey-level dilation as two separable maxima; F.max_pool2d is over 10x slower on one channel on a CPU."""
    p = F.pad(x, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(p[..., :, :-2], p[..., :, 1:-1]), p[..., :, 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def augment(x: torch.Tensor, g: torch.Generator, args: argparse.Namespace) -> torch.Tensor:
    """Random rotation, scale, shear, shift, elastic warp and stroke width, for a batch (B×1×28×28 in [0,1])."""
    b, dev = x.shape[0], x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, device=dev, generator=g) * (hi - lo) + lo

    a = args.affine
    angle = uniform(-12 * a, 12 * a) * math.pi / 180
    shear = uniform(-0.25 * a, 0.25 * a)
    sx, sy = uniform(1 - 0.15 * a, 1 + 0.15 * a), uniform(1 - 0.15 * a, 1 + 0.15 * a)
    tx, ty = uniform(-0.15 * a, 0.15 * a), uniform(-0.15 * a, 0.15 * a)  # grid units: 1.0 is half the image, so ±2 px
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [  # B×3×2: maps an output pixel's (x, y, 1) to where it samples the input
            torch.stack([sx * cos, sy * sin], 1),
            torch.stack([sx * (shear * cos - sin), sy * (shear * sin + cos)], 1),
            torch.stack([tx, ty], 1),
        ],
        1,
    )
    # The elastic part: a smooth random field from 4x4 control points, like Simard's Gaussian-smoothed noise.
    coarse = torch.randn(b, 16, 2, device=dev, generator=g) * (args.elastic * 2 / 28)
    grid = torch.einsum("pk,bkc->bpc", _grid_basis(dev), torch.cat([theta, coarse], 1))
    x = F.grid_sample(x, grid.view(b, 28, 28, 2), mode="bilinear", padding_mode="zeros", align_corners=False)
    if args.stroke > 0:
        # People's pens are thicker or thinner than MNIST's: blend towards a 3x3 dilation or erosion.
        amount = (torch.rand(b, 1, 1, 1, device=dev, generator=g) * 2 - 1) * args.stroke
        thick, thin = dilate(x), -dilate(-x)
        x = x + amount.clamp(min=0) * (thick - x) + (-amount).clamp(min=0) * (thin - x)
    if args.blur > 0:
        x = blur(x, torch.rand(b, device=dev, generator=g) * args.blur)
    return x


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of each image (B×1×28×28) by its own sigma in pixels, as two separable 5-tap passes:
    an out-of-focus photo or a soft pen. Shifted sums, because conv2d takes one kernel for the whole batch."""
    taps = torch.arange(-2, 3, device=x.device, dtype=x.dtype)
    w = torch.exp(-(taps**2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    w = (w / w.sum(1, keepdim=True)).view(-1, 1, 5, 1, 1)
    p = F.pad(x, (2, 2, 2, 2))
    rows = torch.stack([w[:, :, i] * p[:, :, :, i : i + 28] for i in range(5)]).sum(0)
    return torch.stack([w[:, :, i] * rows[:, :, i : i + 28, :] for i in range(5)]).sum(0)


def train(
    model: nn.Module,
    ema: AveragedModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    x: torch.Tensor,
    y: torch.Tensor,
    args: argparse.Namespace,
    g: torch.Generator,
    teacher: nn.Module | None,
    desc: str,
    not_digits: torch.Tensor | None = None,
    pens: torch.Tensor | None = None,
) -> tuple[float, float]:
    """One epoch over (x, y) in shuffled, freshly augmented batches; returns mean training loss and accuracy.

    With pens (x drawn again with other pens), each digit of a batch is taken from there with chance args.pens.

    With not_digits (outliers.py), each batch also takes half as many of them, augmented the same way, and
    the loss pushes the model's answer on them towards uniform (outlier exposure)."""
    model.train()
    order = torch.randperm(len(x), device=x.device, generator=g)
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for idx in tqdm(order.split(args.batch_size), desc=desc, leave=False, disable=args.quiet):
        batch = x[idx]
        if pens is not None:
            redrawn = torch.rand(len(idx), 1, 1, 1, device=x.device, generator=g) < args.pens
            batch = torch.where(redrawn, pens[idx], batch)
        if not_digits is not None:
            picked = torch.randint(len(not_digits), (len(idx) // 2,), device=x.device, generator=g)
            batch = torch.cat([batch, not_digits[picked]])
        inputs = normalize(augment(batch, g, args))
        logits = model(inputs)
        if not_digits is not None:
            # Cross-entropy against the uniform answer: the mean of the negative log-probabilities.
            away = -F.log_softmax(logits[len(idx) :], 1).mean()
            inputs, logits = inputs[: len(idx)], logits[: len(idx)]
        loss = F.cross_entropy(logits, y[idx], label_smoothing=args.label_smoothing)
        if teacher is not None:
            t = args.kd_temperature
            with torch.no_grad():
                soft = F.log_softmax(teacher(inputs) / t, dim=1)
            distill = F.kl_div(F.log_softmax(logits / t, dim=1), soft, reduction="batchmean", log_target=True)
            loss = (1 - args.kd_alpha) * loss + args.kd_alpha * t * t * distill
        if not_digits is not None:
            loss = loss + args.outlier_weight * away
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
    data: dict[str, Any],
    args: argparse.Namespace,
    epochs: int,
    lr: float,
    g: torch.Generator,
    teacher: nn.Module | None = None,
    name: str = "mlp",
    not_digits: torch.Tensor | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Train model, keeping the moving average with the best validation accuracy (MNIST's and as uploads, averaged);
    returns its state and the history."""
    ema = AveragedModel(model, multi_avg_fn=ema_update(args.ema_decay))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=args.weight_decay)
    steps = math.ceil(len(data["train_x"]) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps)
    best_acc, best_state, history = -1.0, None, []
    bar = tqdm(range(1, epochs + 1), desc=name, disable=args.quiet)
    for epoch in bar:
        train_loss, train_acc = train(
            model,
            ema,
            optimizer,
            scheduler,
            data["train_x"],
            data["train_y"],
            args,
            g,
            teacher,
            f"{name} epoch {epoch}/{epochs}",
            not_digits,
            data.get("train_pens"),
        )
        val_loss, val_acc = evaluate(ema.module, data["val_x"], data["val_y"])
        real_acc = evaluate(ema.module, data["val_real_x"], data["val_real_y"])[1]
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
        if args.quiet:
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


def to_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device).unsqueeze(1).float().div_(255)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--epochs", type=int, default=None, help="MLP epochs (default: 70, 40 with --fast, 3 with --feedback)"
    )
    parser.add_argument(
        "--fast", action="store_true", help="no teacher and 40 epochs: a few minutes on a CPU (default: off)"
    )
    parser.add_argument(
        "--teacher-epochs", type=int, default=15, help="CNN teacher epochs, 0 for no teacher (default: 15)"
    )
    parser.add_argument("--kd-alpha", type=float, default=0.5, help="weight of the distillation term (default: 0.5)")
    parser.add_argument("--kd-temperature", type=float, default=4.0, help="distillation temperature (default: 4.0)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size (default: 128)")
    parser.add_argument(
        "--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule (default: 3e-3)"
    )
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default: 1e-4)")
    parser.add_argument("--dropout", type=float, default=0.1, help="MLP dropout after each hidden layer (default: 0.1)")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing (default: 0.0)")
    parser.add_argument(
        "--affine",
        type=float,
        default=0.5,
        help="strength of the random affine transform: 1 is ±12°, ±15%% scale, ±0.25 shear, ±2 px (default: 0.5)",
    )
    parser.add_argument(
        "--elastic", type=float, default=1.0, help="elastic distortion in pixels, 0 for none (default: 1.0)"
    )
    parser.add_argument(
        "--pens",
        type=float,
        default=0.5,
        help="chance that a training digit is taken as drawn again with another pen (redraw.py), 0 for never "
        "(default: 0.5)",
    )
    parser.add_argument("--stroke", type=float, default=0.0, help="stroke width augmentation, 0 to 1 (default: 0.0)")
    parser.add_argument(
        "--blur", type=float, default=0.0, help="Gaussian blur up to this sigma in pixels, 0 for none (default: 0.0)"
    )
    parser.add_argument(
        "--outliers",
        type=int,
        default=30000,
        help="things that are not digits (outliers.py) for the MLP to learn to doubt, 0 for none (default: 30000)",
    )
    parser.add_argument(
        "--outlier-weight",
        type=float,
        default=1.0,
        help="weight of the loss that pushes the answer on them towards uniform (default: 1.0)",
    )
    parser.add_argument(
        "--ema-decay", type=float, default=0.999, help="decay of the weights' moving average (default: 0.999)"
    )
    parser.add_argument(
        "--val-size", type=int, default=5000, help="training images held out for validation (default: 5000)"
    )
    parser.add_argument(
        "--real-val",
        type=int,
        default=1000,
        help="validation digits also drawn as uploads (redraw.py) for the choice of checkpoint and threshold "
        "(default: 1000)",
    )
    parser.add_argument(
        "--subset", type=int, default=0, help="train on only this many images, for smoke tests (default: 0, all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="training device (default: auto)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="weights file to write (default: weights/mnist_mlp.safetensors; with --feedback, "
        "weights/feedback.safetensors, beside the served ones)",
    )
    parser.add_argument(
        "--eval-only", action="store_true", help="only evaluate --weights on the test set (default: off)"
    )
    parser.add_argument(
        "--remeasure",
        action="store_true",
        help="measure --weights' upload and not-a-digit figures with today's preprocessing, record them in its "
        "metadata and write its report again to --report; the tensors are kept (default: off)",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=DEFAULT_WEIGHTS,
        help="weights for --eval-only and --remeasure (default: weights/mnist_mlp.safetensors)",
    )
    parser.add_argument(
        "--report", type=Path, default=REPORT, help="folder for the training report (default: reports/latest)"
    )
    parser.add_argument("--no-report", action="store_true", help="skip the report and its measurements (default: off)")
    parser.add_argument(
        "--report-digits",
        type=int,
        default=2000,
        help="test digits for the report's upload and rejection figures (default: 2000)",
    )
    parser.add_argument(
        "--feedback",
        action="store_true",
        help="fine-tune --weights on the stored user corrections, for --epochs (default: off)",
    )
    parser.add_argument(
        "--promote",
        type=Path,
        metavar="WEIGHTS",
        help="make WEIGHTS (from --feedback) the served weights, checked first (default: off)",
    )
    parser.add_argument(
        "--export-feedback",
        type=Path,
        metavar="DIR",
        help="write the stored corrections as IDX files into DIR (default: off)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="where the corrections are (default: $DATABASE_URL, else SQLite data/feedback.db)",
    )
    parser.add_argument("--quiet", action="store_true", help="a line per epoch instead of progress bars (default: off)")
    args = parser.parse_args(argv)
    if args.fast:
        args.teacher_epochs = 0
    if args.epochs is None:
        args.epochs = 3 if args.feedback else 40 if args.fast else 70
    if args.out is None:
        args.out = FEEDBACK_WEIGHTS if args.feedback else DEFAULT_WEIGHTS
    return args


def load_data(args: argparse.Namespace, device: torch.device) -> dict[str, torch.Tensor]:
    """The training set split into training and validation (seeded), and the test set, on the device; with the
    training digits drawn again with other pens, and validation digits drawn as uploads (redraw.py)."""
    images, labels = dataset.load(train=True)
    split = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
    val_idx, train_idx = split[: args.val_size], split[args.val_size :]
    if args.subset:
        train_idx = train_idx[: args.subset]
    test_x, test_y = dataset.load(train=False)
    real = val_idx[: args.real_val]
    real_x, real_y = in_parallel(redraw.validation_inputs, images[real], labels[real], args.seed)
    data = {
        "train_x": to_float(images[train_idx], device),
        "train_y": labels[train_idx].to(device),
        "val_x": to_float(images[val_idx], device),
        "val_y": labels[val_idx].to(device),
        "val_real_x": torch.from_numpy(real_x).unsqueeze(1).to(device),
        "val_real_y": torch.from_numpy(real_y).to(device),
        "test_x": to_float(test_x, device),
        "test_y": test_y.to(device),
    }
    if args.pens:
        pens, _ = in_parallel(redraw.redrawn, images[train_idx], labels[train_idx], args.seed)
        data["train_pens"] = torch.from_numpy(pens).unsqueeze(1).to(device)
    return data


PARTS = 16  # digits to redraw are cut in this many parts, each with its own seed, whatever the number of cores

Work = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def in_parallel(work: Work, digits: torch.Tensor, labels: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """work(digits, labels, seed) over PARTS parts of them, on every core; the parts' results joined in order."""
    starts = np.linspace(0, len(digits), PARTS + 1).astype(int)
    d, y = digits.numpy(), labels.numpy()
    parts = [(d[a:b], y[a:b], seed * PARTS + i) for i, (a, b) in enumerate(itertools.pairwise(starts))]
    # Forked: the workers start at once, and use numpy, scipy and Pillow only, never torch or the GPU.
    with multiprocessing.get_context("fork").Pool(len(os.sched_getaffinity(0))) as pool:
        done = pool.starmap(work, parts)
    return np.concatenate([x for x, _ in done]), np.concatenate([y for _, y in done])


def load_outliers(args: argparse.Namespace, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Things that are not digits (outliers.py): some to learn from, and others held out to measure with,
    each drawn with digits of its own split for its overlaps."""

    def draw(split: str, n: int, seed: int) -> torch.Tensor:
        digits = (data[f"{split}_x"][:, 0] * 255).round().byte().cpu().numpy()
        pool = outliers.pool(digits, data[f"{split}_y"].cpu().numpy(), n, seed)
        return torch.from_numpy(pool).unsqueeze(1).to(data[f"{split}_x"].device)

    return {
        "outlier_x": draw("train", min(args.outliers, len(data["train_x"])), args.seed),
        "val_outlier_x": draw("val", VAL_OUTLIERS, args.seed + 1),
    }


def exposure(args: argparse.Namespace, data: dict[str, Any]) -> torch.Tensor | None:
    """The outliers the MLP learns to doubt, unless --outliers 0 turned it off."""
    return data["outlier_x"] if args.outliers else None


def threshold(model: nn.Module, data: dict[str, Any], val_logits: torch.Tensor, temperature: float) -> float:
    """The confidence under which a fixed share of validation digits fall, MNIST's and those drawn as uploads
    together: MNIST's alone would flag a real pen's digits far more often."""
    real_logits = logits(model, data["val_real_x"])
    return uncertain_threshold(F.softmax(torch.cat([val_logits, real_logits]) / temperature, 1))


def finish(
    state: dict[str, torch.Tensor],
    history: list[dict[str, Any]],
    data: dict[str, Any],
    args: argparse.Namespace,
    seconds: float,
    results: dict[str, Any],
) -> None:
    """Calibrate on validation, measure on test, and write the weights, their metadata and the report."""
    model = MLP().to(data["val_x"].device)
    model.load_state_dict(state)
    best = max(history, key=lambda h: (h["val_acc"] + h["real_val_acc"], h["epoch"]))
    # Calibration is fitted on validation; the test set is only measured.
    val_logits, test_logits = logits(model, data["val_x"]), logits(model, data["test_x"])
    temperature = fit_temperature(val_logits, data["val_y"].cpu())
    uncertain_below = threshold(model, data, val_logits, temperature)
    test_y = data["test_y"].cpu()
    measured = test_figures(test_logits, test_y, temperature, uncertain_below)
    # How many held-out outliers the threshold catches: what validation says of the not-a-digit training.
    val_outlier_probs = F.softmax(logits(model, data["val_outlier_x"]) / temperature, 1)
    measured["val_outliers_flagged"] = round(
        float((val_outlier_probs.max(1).values < uncertain_below).float().mean()), 4
    )
    print(
        f"best validation accuracy {best['val_acc']:.2%} at epoch {best['epoch']}; "
        f"test accuracy {measured['test_accuracy']:.2%}; {measured['val_outliers_flagged']:.1%} of validation "
        f"outliers flagged; {seconds:.0f} s on {model.fc1.weight.device}"
    )

    skip = {
        "out",
        "eval_only",
        "remeasure",
        "weights",
        "quiet",
        "device",
        "report",
        "no_report",
        "report_digits",
        "database_url",
        "export_feedback",
        "promote",
    }
    recipe = {k: v for k, v in vars(args).items() if k not in skip}
    summary = {
        **measured,
        "val_accuracy": best["val_acc"],
        "real_val_accuracy": best["real_val_acc"],
        "best_epoch": best["epoch"],
        "train_seconds": round(seconds, 1),
        "device": str(model.fc1.weight.device),
        "temperature": round(temperature, 4),
        "uncertain_below": round(uncertain_below, 4),
        **results,
    }
    metadata = {
        "architecture": "MLP 784-256-128-10 (ReLU)",
        **{
            k: f"{v:.4f}" if isinstance(v, float) else v if isinstance(v, str) else json.dumps(v)
            for k, v in summary.items()
        },
        "epochs": str(args.epochs),
        "seed": str(args.seed),
        "train_images": str(len(data["train_x"])),
        "torch_version": torch.__version__,
        "data_md5": json.dumps(dataset.IDX_MD5),
        "recipe": json.dumps(recipe),
        "history": json.dumps(history),
    }
    if not args.no_report:
        # What the served model does with uploads and with things that are not digits; recorded with the weights.
        predictor = Predictor.from_state(state, metadata)
        all_images = (data["test_x"][:, 0].cpu().numpy() * 255).round().astype(np.uint8)
        served, scores = report.served_figures(predictor, all_images, test_y.numpy(), args.seed, args.report_digits)
        summary.update(served)
        metadata.update({k: json.dumps(v) for k, v in served.items()})
        before, after = F.softmax(test_logits, 1), F.softmax(test_logits / temperature, 1)
        report.write_report(args.report, summary, history, all_images, test_y, before, after, scores)
        print(f"wrote the report to {args.report}")
    save_weights(state, args.out, metadata)
    print(f"wrote {args.out}")


def load_feedback(url: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The stored corrections, whole numbers' digits included: the 28x28 images the model saw
    (N×1×28×28 in [0,1]) and their right labels."""
    with FeedbackStore(url) as store:
        rows = store.all()
    if not rows:
        return torch.zeros(0, 1, 28, 28, device=device), torch.zeros(0, dtype=torch.long, device=device)
    images = np.stack([pixels for pixels, _ in rows])
    return to_float(torch.from_numpy(images), device), torch.tensor([label for _, label in rows], device=device)


def learn_from_feedback(args: argparse.Namespace, data: dict[str, Any], g: torch.Generator) -> None:
    """Fine-tune --weights on MNIST plus the corrections, oversampled; the oversampling is chosen on validation.

    A fifth of the corrections is held out and only measured; another fifth is their validation split.
    The candidate with the fewest mistakes on both validation sets together wins, each image counting
    once, and the current weights are a candidate too.
    """
    x, y = load_feedback(args.database_url, data["val_x"].device)
    if len(x) == 0:
        with FeedbackStore(args.database_url) as store:
            waiting = len(store.listed())
        print(
            f"There are no accepted corrections in {args.database_url}, so there is nothing to learn from. "
            f"They come from the page's 'Wrong?' buttons and from POST /feedback; {waiting} wait for an "
            "operator's review: python review.py"
        )
        return
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed)).to(x.device)
    k = max(1, len(x) // 5)
    held, val, fit_idx = order[:k], order[k : 2 * k], order[2 * k :]

    def mistakes(model: nn.Module) -> tuple[float, float, float]:
        mnist_val, feedback_val = evaluate(model, data["val_x"], data["val_y"])[1], evaluate(model, x[val], y[val])[1]
        return (1 - mnist_val) * len(data["val_x"]) + (1 - feedback_val) * len(val), mnist_val, feedback_val

    base = load_model(args.weights).to(x.device)
    before = {
        "mnist_test": evaluate(base, data["test_x"], data["test_y"])[1],
        "feedback_heldout": evaluate(base, x[held], y[held])[1],
    }
    print(f"{len(x)} corrections: {len(fit_idx)} to learn from, {len(val)} to choose with, {len(held)} held out")
    best_state, best_history, chosen = base.state_dict(), [], 0
    fewest, mnist_val, feedback_val = mistakes(base)
    print(f"current weights: MNIST validation {mnist_val:.2%}, corrections validation {feedback_val:.2%}")
    start = time.perf_counter()
    not_digits = exposure(args, data)  # fine-tuning keeps the doubt of what isn't a digit
    for repeat in (4, 16, 64):
        model = MLP(dropout=args.dropout).to(x.device)
        model.load_state_dict(base.state_dict())
        mixed = {
            **data,
            "train_x": torch.cat([data["train_x"]] + [x[fit_idx]] * repeat),
            "train_y": torch.cat([data["train_y"]] + [y[fit_idx]] * repeat),
        }
        if "train_pens" in data:  # a correction is its own drawing: it came with its writer's pen
            mixed["train_pens"] = torch.cat([data["train_pens"]] + [x[fit_idx]] * repeat)
        name = f"fine-tune x{repeat}"
        state, history = fit(model, mixed, args, args.epochs, args.lr / 10, g, name=name, not_digits=not_digits)
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
    lost = evaluate(base, data["val_x"], data["val_y"])[1] - evaluate(model, data["val_x"], data["val_y"])[1]
    if lost > MAX_VALIDATION_LOSS:
        # The corrections pull against MNIST itself: wrong labels, or a kind of writing MNIST never had.
        sys.exit(
            f"Not written: fine-tuning on the corrections loses {lost:.2%} on MNIST validation, over the "
            f"{MAX_VALIDATION_LOSS:.1%} allowed. Review the accepted corrections (python review.py --list accepted)."
        )
    after = {
        "mnist_test": evaluate(model, data["test_x"], data["test_y"])[1],
        "feedback_heldout": evaluate(model, x[held], y[held])[1],
    }
    print(
        f"chose {chosen}x oversampling. MNIST test: {before['mnist_test']:.2%} -> {after['mnist_test']:.2%}; "
        f"held-out corrections: {before['feedback_heldout']:.2%} -> {after['feedback_heldout']:.2%}"
    )
    results = {"feedback": {"corrections": len(x), "oversampling": chosen, "before": before, "after": after}}
    finish(best_state, best_history, data, args, time.perf_counter() - start, results)
    if args.out != DEFAULT_WEIGHTS:
        print(f"The served weights are unchanged. To serve these from the next start: train.py --promote {args.out}")


def promote(path: Path) -> None:
    """Make fine-tuned weights the served ones: checked as the service checks them, then swapped in whole."""
    try:
        predictor = Predictor(path)
    except WeightsError as e:
        sys.exit(f"Not promoted: {e}")
    if "feedback" not in predictor.metadata:
        sys.exit(f"Not promoted: {path} was not made by train.py --feedback")
    staged = DEFAULT_WEIGHTS.with_name(f".{DEFAULT_WEIGHTS.name}.new")
    shutil.copyfile(path, staged)
    staged.replace(DEFAULT_WEIGHTS)  # whole, never half-written
    sha256_path(DEFAULT_WEIGHTS).write_text(f"{predictor.sha256}  {DEFAULT_WEIGHTS.name}\n")
    print(f"{DEFAULT_WEIGHTS} is now {path} (sha256 {predictor.sha256[:12]}); restart the service to serve it")


def export_feedback(args: argparse.Namespace) -> None:
    """The corrections in MNIST's IDX layout, so that any MNIST reader can load them."""
    x, y = load_feedback(args.database_url, torch.device("cpu"))
    args.export_feedback.mkdir(parents=True, exist_ok=True)
    dataset.write_idx(args.export_feedback / "feedback-images-idx3-ubyte", (x[:, 0] * 255).round().byte().numpy())
    dataset.write_idx(args.export_feedback / "feedback-labels-idx1-ubyte", y.byte().numpy())
    print(f"wrote {len(x)} corrections to {args.export_feedback}")


def remeasure(args: argparse.Namespace) -> None:
    """Record the served figures of --weights again, drawn as training drew them, and write its report again
    with them: preprocessing changes what uploads become, and figures recorded before the change would no
    longer be what users get, nor agree with the report."""
    predictor = Predictor(args.weights)
    images, labels = dataset.load(train=False)
    seed, digits = int(predictor.metadata.get("seed", 0)), args.report_digits
    served, scores = report.served_figures(predictor, images.numpy(), labels.numpy(), seed, digits)
    metadata = predictor.metadata | {k: json.dumps(v) for k, v in served.items()}
    save_weights(load_file(str(args.weights)), args.weights, metadata)
    print(f"recorded in {args.weights}: {json.dumps(served)}")
    if args.no_report:
        return
    # The report's summary is what finish() recorded, less what describes the run rather than its results.
    run = {"architecture", "epochs", "seed", "train_images", "torch_version", "data_md5", "recipe", "history"}
    # The headline first, as training writes it; safetensors keeps its metadata in no particular order.
    keys = sorted(metadata.keys() - run, key=lambda k: (k != "test_accuracy", k))
    summary = {k: metadata[k] if k == "device" else json.loads(metadata[k]) for k in keys}
    x = to_float(images, torch.device("cpu"))
    test_logits = logits(predictor.model, x)
    before, after = F.softmax(test_logits, 1), F.softmax(test_logits / predictor.temperature, 1)
    history = json.loads(metadata["history"])
    report.write_report(args.report, summary, history, images.numpy(), labels, before, after, scores)
    print(f"wrote the report to {args.report}")


def main() -> None:
    args = parse_args()
    if args.export_feedback:
        export_feedback(args)
        return
    if args.promote:
        promote(args.promote)
        return
    if args.remeasure:
        remeasure(args)
        return
    device = pick_device(args.device)
    if args.eval_only:
        test_x, test_y = dataset.load(train=False)
        _, acc = evaluate(load_model(args.weights).to(device), to_float(test_x, device), test_y.to(device))
        print(f"{args.weights}: test accuracy {acc:.2%} on {len(test_x):,} images")
        return

    torch.manual_seed(args.seed)
    g = torch.Generator(device=device).manual_seed(args.seed)
    data = load_data(args, device)
    data |= load_outliers(args, data)
    if args.feedback:
        learn_from_feedback(args, data, g)
        return

    start = time.perf_counter()
    teacher, results = None, {}
    if args.teacher_epochs:
        teacher = TeacherCNN().to(device)
        state, teacher_history = fit(teacher, data, args, args.teacher_epochs, args.lr, g, name="teacher")
        teacher.load_state_dict(state)
        teacher.eval()
        results["teacher_val_accuracy"] = round(max(h["val_acc"] for h in teacher_history), 4)
        results["teacher_test_accuracy"] = round(evaluate(teacher, data["test_x"], data["test_y"])[1], 4)
        print(f"teacher: validation {results['teacher_val_accuracy']:.2%}, test {results['teacher_test_accuracy']:.2%}")

    model = MLP(dropout=args.dropout).to(device)
    state, history = fit(model, data, args, args.epochs, args.lr, g, teacher, not_digits=exposure(args, data))
    finish(state, history, data, args, time.perf_counter() - start, results)


if __name__ == "__main__":
    main()
