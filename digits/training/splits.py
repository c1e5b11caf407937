"""The data as training sees it: MNIST's training set split into training and validation (seeded), the test set,
the training digits drawn again with other pens, validation digits drawn as uploads, and the outliers."""

import itertools
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from digits.imaging.fit import MEAN, STD
from digits.training import dataset, outliers, redraw
from digits.training.recipe import Recipe

VAL_OUTLIERS = 2000  # outliers held out, as validation digits are, to measure how many are flagged; no more than those
PARTS = 16  # digits to redraw are cut in this many parts, each with its own seed, whatever the number of cores

Work = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class Splits:
    """Images as B×1×28×28 in [0,1] with their labels, on the training device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    val_real_x: torch.Tensor  # validation digits drawn as uploads and read through the service's preprocessing
    val_real_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    train_pens: torch.Tensor | None = None  # train_x drawn again with other pens
    outlier_x: torch.Tensor | None = None  # things that are not digits, to learn to doubt
    val_outlier_x: torch.Tensor | None = None  # others, held out to measure with


def to_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device).unsqueeze(1).float().div_(255)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Standardize pixels already scaled to [0,1] as the model's input, with the constants serving uses."""
    return (x - MEAN) / STD


def load_splits(recipe: Recipe, device: torch.device) -> Splits:
    """The training set split into training and validation (seeded), and the test set, on the device; with the
    training digits drawn again with other pens, and validation digits drawn as uploads (redraw.py)."""
    images, labels = dataset.load(train=True)
    split = torch.randperm(len(images), generator=torch.Generator().manual_seed(recipe.seed))
    val_idx, train_idx = split[: recipe.val_size], split[recipe.val_size :]
    if recipe.subset:
        train_idx = train_idx[: recipe.subset]
    test_x, test_y = dataset.load(train=False)
    real = val_idx[: recipe.real_val]
    real_x, real_y = in_parallel(redraw.validation_inputs, images[real], labels[real], recipe.seed)
    data = Splits(
        train_x=to_float(images[train_idx], device),
        train_y=labels[train_idx].to(device),
        val_x=to_float(images[val_idx], device),
        val_y=labels[val_idx].to(device),
        val_real_x=torch.from_numpy(real_x).unsqueeze(1).to(device),
        val_real_y=torch.from_numpy(real_y).to(device),
        test_x=to_float(test_x, device),
        test_y=test_y.to(device),
    )
    if recipe.pens:
        pens, _ = in_parallel(redraw.redrawn, images[train_idx], labels[train_idx], recipe.seed)
        data.train_pens = torch.from_numpy(pens).unsqueeze(1).to(device)
    return data


def in_parallel(work: Work, digits: torch.Tensor, labels: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """work(digits, labels, seed) over PARTS parts of them, on every core; the parts' results joined in order."""
    starts = np.linspace(0, len(digits), PARTS + 1).astype(int)
    d, y = digits.numpy(), labels.numpy()
    parts = [(d[a:b], y[a:b], seed * PARTS + i) for i, (a, b) in enumerate(itertools.pairwise(starts))]
    # Forked: the workers start at once, and use numpy, scipy and Pillow only, never torch or the GPU.
    with multiprocessing.get_context("fork").Pool(len(os.sched_getaffinity(0))) as pool:
        done = pool.starmap(work, parts)
    return np.concatenate([x for x, _ in done]), np.concatenate([y for _, y in done])


def with_outliers(recipe: Recipe, data: Splits) -> Splits:
    """Things that are not digits (outliers.py): some to learn from, and others held out to measure with,
    each drawn with digits of its own split for its overlaps."""

    def draw(x: torch.Tensor, y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
        digits = (x[:, 0] * 255).round().byte().cpu().numpy()
        return torch.from_numpy(outliers.pool(digits, y.cpu().numpy(), n, seed)).unsqueeze(1).to(x.device)

    data.outlier_x = draw(data.train_x, data.train_y, min(recipe.outliers, len(data.train_x)), recipe.seed)
    data.val_outlier_x = draw(data.val_x, data.val_y, min(VAL_OUTLIERS, len(data.val_x)), recipe.seed + 1)
    return data
