"""The training report: plots people would rather look at than read, and the numbers behind them.

train.py calls write_report() after a run; it fills a folder with
  curves.png          loss and accuracy per epoch, training and validation
  confusion.png       the confusion matrix of the test set
  misclassified.png   the misread test digits, with their true and predicted labels
  reliability.png     confidence against accuracy, before and after temperature scaling
  not_a_digit.png     the confidence on test digits against things that are not digits, with the threshold
  summary.json        every headline number, also shown in README.md there
It also measures how the model treats things that are not digits (Fashion-MNIST, letters, blank
and noise images) and MNIST digits re-rendered the way people upload them.
"""

import gzip
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from digits.imaging.errors import ImageError
from digits.imaging.png import encode
from digits.inference.forward import limit_threads
from digits.inference.predictor import Predictor
from digits.training.calibration import reliability

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")  # Debian's dataset-fashion-mnist
# Debian's fonts-dejavu-core: the letters are measured in these fonts only, and outliers.py never trains on them.
FONTS = Path("/usr/share/fonts/truetype/dejavu")
# Letters shaped like a digit in many fonts (O and 0, l and 1, S and 5, g and 9) say nothing about rejection.
LETTERS = list("ABCDEFGHJKLMNPQRTUVWXYabcdefhkmnprtuvwxy")
T = TypeVar("T")  # what on_every_core() reads an upload as


def render_as_uploaded(digit: np.ndarray, style: str, rng: np.random.Generator) -> bytes:
    """An MNIST digit as people upload theirs: large, off-centre, dark on light paper or on a transparent canvas."""
    size = int(28 * rng.uniform(4, 10))
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    h, w = int(size * rng.uniform(1.3, 2.0)), int(size * rng.uniform(1.3, 2.2))
    top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    page = np.zeros((h, w), np.float32)
    page[top : top + size, left : left + size] = ink
    if style == "canvas":
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[..., 3] = np.rint(page * 255)  # black strokes, transparent elsewhere
        return encode(rgba)
    paper, pen = rng.uniform(190, 250), rng.uniform(10, 70)
    grey = paper + (pen - paper) * page + rng.normal(0, 4, page.shape)
    photo = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))
    return encode(photo.convert("RGB"), "JPEG", quality=75) if style == "jpeg" else encode(photo)


def phone_photo(digit: np.ndarray, seed: int = 0) -> bytes:
    """A 4000x3000 camera-like JPEG of a digit, or of a number's strip of digits: tinted grey paper lit unevenly,
    sensor noise, the ink large and off-centre. The tests and the benchmarks both send it."""
    rng = np.random.default_rng(seed)
    page = 175 + 30 * np.linspace(0, 1, 4000)[None, :] + rng.normal(0, 5, (3000, 4000))
    scale = min(1600 / digit.shape[0], 3600 / digit.shape[1])
    h, w = round(digit.shape[0] * scale), round(digit.shape[1] * scale)
    ink = np.asarray(Image.fromarray(digit).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float64) / 255
    top, left = 800 + (1600 - h) // 2, min(1400, 4000 - 200 - w)
    page[top : top + h, left : left + w] -= 150 * ink
    rgb = np.clip(np.stack([page, page * 0.97, page * 0.92], -1), 0, 255).astype(np.uint8)
    return encode(rgb, "JPEG", quality=90)


def uploaded_accuracy(predictor: Predictor, images: np.ndarray, labels: np.ndarray, seed: int = 2) -> dict[str, float]:
    """Accuracy on digits re-rendered as uploads, by style. The uploads are drawn in turn from one generator, and
    read on every core: 6,000 of them took 78 s read in turn, half of it reading (`make claims`)."""
    rng = np.random.default_rng(seed)
    out = {}
    for style in ("paper", "jpeg", "canvas"):
        uploads = (render_as_uploaded(d, style, rng) for d in images)
        out[style] = float(np.mean(np.array(on_every_core(predictor, _digit, uploads, chunksize=64)) == labels))
    return out


def on_every_core(
    predictor: Predictor, read: Callable[[Predictor, bytes], T], uploads: Iterable[bytes], chunksize: int = 8
) -> list[T]:
    """read(predictor, upload) for every upload, in their order, in forked workers on every core, while the
    caller's generator goes on drawing the next. Forked, the workers inherit the predictor and whatever else the
    caller set (a module's constant patched included); they use numpy and Pillow only, never torch or the GPU."""
    with multiprocessing.get_context("fork").Pool(len(os.sched_getaffinity(0)), _share, (predictor, read)) as pool:
        return list(pool.imap(_read, uploads, chunksize))


_predictor: Predictor  # on_every_core()'s, in each of its workers
_reader: Callable[[Predictor, bytes], Any]


def _share(predictor: Predictor, read: Callable[[Predictor, bytes], Any]) -> None:
    global _predictor, _reader
    _predictor, _reader = predictor, read
    # One BLAS thread each: with the default of one per core, 150 numbers took 11.3 s on two workers against 9.5 s
    # read in turn; with one, 5.0 s.
    limit_threads(1)


def _read(upload: bytes) -> Any:
    return _reader(_predictor, upload)


def _digit(predictor: Predictor, upload: bytes) -> int:
    return predictor.predict(upload).digit


def letters(rng: np.random.Generator) -> list[Image.Image]:
    """Capital and small letters in 12 DejaVu fonts, dark on white, at a few sizes."""
    fonts = sorted(FONTS.glob("*.ttf"))[:12]
    out = []
    for font_path in fonts:
        for ch in LETTERS:
            size = int(rng.integers(60, 140))
            im = Image.new("L", (200, 200), 255)
            ImageDraw.Draw(im).text((30, 10), ch, fill=0, font=ImageFont.truetype(str(font_path), size))
            out.append(im)
    return out


def clothes() -> np.ndarray:
    """Fashion-MNIST's 10,000 test images (N×28×28 uint8, bright on black), the yardstick no training sees."""
    raw = gzip.decompress(FASHION_MNIST.read_bytes())
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)


def non_digits(rng: np.random.Generator, n: int = 2000) -> dict[str, list[Image.Image]]:
    """Things people send that are not digits. Fashion-MNIST is only ever measured, never trained on."""
    sets: dict[str, list[Image.Image]] = {}
    if FASHION_MNIST.is_file():
        items = clothes()
        sets["Fashion-MNIST"] = [Image.fromarray(c) for c in items[rng.choice(len(items), n, replace=False)]]
    sets["letters"] = letters(rng)
    sets["blank"] = [Image.new("L", (64, 64), int(v)) for v in rng.integers(0, 256, 50)]
    sets["noise"] = [Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)) for _ in range(200)]
    return sets


def served_figures(
    predictor: Predictor, images: np.ndarray, labels: np.ndarray, seed: int, digits: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """What the weights record of uploads: accuracy on test digits re-rendered as uploads, and how often
    things that are not digits are flagged, on `digits` test digits drawn with `seed`; and each set's
    confidences, for the report's plot.

    The same draw when training writes the figures and when `make claims` checks them."""
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(images), min(digits, len(images)), replace=False)
    sets = score_sets(predictor, images[sample], rng)
    figures = {
        "uploaded_accuracy": uploaded_accuracy(predictor, images[sample], labels[sample]),
        "rejection": rejection(sets),
    }
    return figures, {name: s.confidence for name, s in sets.items()}


@dataclass
class Scored:
    """How the service answers each image of a set, sent as a PNG upload, exactly as a user would see it."""

    confidence: np.ndarray  # calibrated, and 0 where no digit is found at all
    flagged: np.ndarray  # refused, or answered uncertain
    not_a_digit: np.ndarray  # refused, or answered "this doesn't look like a digit"


def scored(predictor: Predictor, images: list[Image.Image]) -> Scored:
    results = predictor.predict_many([encode(im) for im in images])
    # Refused outright is the surest "not a digit".
    return Scored(
        confidence=np.array([0.0 if isinstance(r, ImageError) else r.confidence for r in results]),
        flagged=np.array([isinstance(r, ImageError) or r.uncertain for r in results]),
        not_a_digit=np.array([isinstance(r, ImageError) or r.not_a_digit for r in results]),
    )


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a digit scores above a non-digit), ties counting half: the Mann-Whitney form of the ROC area."""
    both = np.concatenate([positive, negative])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for value in np.unique(both):  # average ranks over ties
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def score_sets(predictor: Predictor, digits: np.ndarray, rng: np.random.Generator) -> dict[str, Scored]:
    """The service's answers on real test digits (28×28, ink bright), then on each set of things that aren't."""
    sets = {"MNIST test digits": scored(predictor, [Image.fromarray(d) for d in digits])}
    return sets | {name: scored(predictor, images) for name, images in non_digits(rng).items()}


def rejection(sets: dict[str, Scored]) -> dict[str, dict[str, float | None]]:
    """For each set: the share flagged uncertain (or refused), the share told "not a digit", and for things
    that are not digits the AUROC of the confidence against real test digits."""
    digits = sets["MNIST test digits"]
    return {
        name: {
            "flagged": float(s.flagged.mean()),
            "not_a_digit": float(s.not_a_digit.mean()),
            "auroc": None if s is digits else auroc(digits.confidence, s.confidence),
            **({} if s is digits else {"count": len(s.confidence)}),
        }
        for name, s in sets.items()
    }


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(epochs, [h["train_loss"] for h in history], label="training (augmented)")
    left.plot(epochs, [h["val_loss"] for h in history], label="validation")
    left.set(xlabel="epoch", ylabel="cross-entropy", title="Loss", yscale="log")
    right.plot(epochs, [100 * h["train_acc"] for h in history], label="training (augmented)")
    right.plot(epochs, [100 * h["val_acc"] for h in history], label="validation")
    right.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy", ylim=(97, 100))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(labels: np.ndarray, preds: np.ndarray, path: Path) -> None:
    matrix = np.zeros((10, 10), int)
    np.add.at(matrix, (labels, preds), 1)
    fig, ax = plt.subplots(figsize=(6.5, 6))
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    ax.imshow(off, cmap="Reds")
    for i in range(10):
        for j in range(10):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    matrix[i, j],
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if i != j else "#2457d6",
                    fontweight="bold" if i == j else "normal",
                )
    ax.set(
        xticks=range(10),
        yticks=range(10),
        xlabel="predicted",
        ylabel="true",
        title=f"Test set: {int(np.trace(matrix))} of {len(labels)} right",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_misclassified(images: np.ndarray, labels: np.ndarray, preds: np.ndarray, path: Path, limit: int = 80) -> None:
    wrong = np.flatnonzero(labels != preds)[:limit]
    cols = 10
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):  # the last row of the grid may be only partly filled
        ax.imshow(images[i], cmap="gray")
        ax.set_title(f"{labels[i]}→{preds[i]}", fontsize=9, color="#b3261e")
    fig.suptitle(f"Misread test digits (true→predicted): {int((labels != preds).sum())} in all")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(
    labels: torch.Tensor,
    before: torch.Tensor,
    after: torch.Tensor,
    ece: tuple[float, float],
    temperature: float,
    path: Path,
) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    for ax, probs, title, e in zip(
        axes, (before, after), ("Before calibration", f"After (T = {temperature:.2f})"), ece, strict=True
    ):
        bins = [b for b in reliability(probs, labels) if b["count"]]
        centres = [(b["lo"] + b["hi"]) / 2 for b in bins]
        ax.bar(centres, [b["accuracy"] for b in bins], width=1 / 15, edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        ax.plot(centres, [b["confidence"] for b in bins], "o", color="#b3261e", label="mean confidence")
        ax.set(xlabel="confidence", title=f"{title}: ECE {100 * e:.2f}%", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left")
    axes[0].set_ylabel("accuracy (test set)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_not_a_digit(scores: dict[str, np.ndarray], threshold: float, path: Path) -> None:
    """Each set's confidences as the service answers them (0 for a refused upload), with the threshold below
    which an answer is flagged: the digits should sit right of it, everything else left."""
    sets = {k: v for k, v in scores.items() if k != "blank"}  # all refused: a spike at 0 says nothing more
    fig, axes = plt.subplots(len(sets), 1, figsize=(8, 1.6 * len(sets) + 0.6), sharex=True)
    bins = np.linspace(0, 1, 51)
    for ax, (name, conf) in zip(axes, sets.items(), strict=True):
        flagged = float((conf < threshold).mean())
        ax.hist(conf, bins=bins, color="#2457d6" if name.startswith("MNIST") else "#b3261e", alpha=0.8)
        ax.axvline(threshold, color="black", linestyle="--")
        ax.set_yscale("log")
        ax.set_title(f"{name} ({len(conf):,}): {flagged:.1%} below the threshold", fontsize=10, loc="left")
    axes[-1].set_xlabel(f"calibrated confidence; flagged below {threshold:.3f} (dashed), chosen on validation digits")
    fig.suptitle("Digits against things that are not digits, sent as uploads")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    folder: Path,
    summary: dict[str, Any],
    history: list[dict[str, Any]],
    test_images: np.ndarray,
    test_labels: torch.Tensor,
    before: torch.Tensor,
    after: torch.Tensor,
    scores: dict[str, np.ndarray],
) -> None:
    """Plots and numbers of a finished run; before/after are the test probabilities without and with temperature,
    scores each set's confidences from served_figures()."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = test_labels.cpu()
    preds = after.argmax(1).numpy()
    plot_curves(history, folder / "curves.png")
    plot_confusion(labels.numpy(), preds, folder / "confusion.png")
    plot_misclassified(test_images, labels.numpy(), preds, folder / "misclassified.png")
    plot_reliability(
        labels,
        before,
        after,
        (summary["ece_before"], summary["ece_after"]),
        summary["temperature"],
        folder / "reliability.png",
    )
    plot_not_a_digit(scores, summary["uncertain_below"], folder / "not_a_digit.png")
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# Training report: {summary['test_accuracy']:.2%} on the MNIST test set",
        "",
        "| figure | value |",
        "| --- | --- |",
    ]
    for key, value in summary.items():
        if not isinstance(value, dict):
            lines.append(f"| {key} | {value} |")
    lines += [
        "",
        "| set | flagged uncertain or refused | told “not a digit” or refused | AUROC against test digits |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in summary["rejection"].items():
        auc = "" if r["auroc"] is None else f"{r['auroc']:.4f}"
        lines.append(f"| {name} | {r['flagged']:.1%} | {r['not_a_digit']:.1%} | {auc} |")
    lines += [
        "",
        "![curves](curves.png)",
        "![confusion](confusion.png)",
        "![reliability](reliability.png)",
        "![not a digit](not_a_digit.png)",
        "![misclassified](misclassified.png)",
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines))
