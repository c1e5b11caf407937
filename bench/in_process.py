"""The In-process and Training sections of `make bench`: the Predictor's throughput in process, train.py's loop
against a bare one, and whole training runs."""

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's own modules, one folder up

from common import (
    digit_png,
    fmt,
    median_spread,
    stamp,
)
from digits.inference.predictor import Predictor
from digits.training import dataset


def in_process(repeats: int) -> tuple[list[str], float]:
    """Predictor: decode + preprocess per image, and the model forward per batch, on 28x28 PNGs.
    Also returns the median seconds per image at batch 1, everything included."""

    torch.set_num_threads(1)  # as the server runs it
    predictor = Predictor()
    with tempfile.TemporaryDirectory() as tmp:
        png = digit_png(Path(tmp) / "seven.png").read_bytes()
    rows = []
    for size in (1, 32, 256):
        uploads = [png] * size
        prep, forward, total = [], [], []
        for _ in range(repeats):
            start = time.perf_counter()
            images = np.stack([predictor.prepare(u)[0] for u in uploads])
            mid = time.perf_counter()
            predictor.classify(images)
            end = time.perf_counter()
            prep.append(size / (mid - start))
            forward.append(size / (end - mid))
            total.append(size / (end - start))
        rows.append(f"| {size} | {fmt(prep)} | {fmt(forward)} | {fmt(total)} |")
        if size == 1:
            single = 1 / median_spread(total)[0]
    return rows, single


def training(repeats: int) -> list[str]:
    """train.py's epoch (augmentation, EMA, schedule) against a bare forward/backward loop on in-memory tensors,
    with one torch thread and with two."""
    import torch.nn.functional as F
    from torch.optim.swa_utils import AveragedModel

    from digits.imaging.fit import normalize
    from digits.training.loop import ema_update, train_one_epoch
    from digits.training.recipe import preset
    from digits.training.splits import to_float
    from model import MLP

    args = preset("fast")  # the default augmentation, without the teacher
    images, labels = dataset.load(train=True)
    x, y = to_float(images[:55_000], torch.device("cpu")), labels[:55_000]
    g = torch.Generator().manual_seed(0)
    rows = []
    before = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        full, bare = [], []
        for _ in range(repeats):
            model = MLP(dropout=0.1)
            ema = AveragedModel(model, multi_avg_fn=ema_update(args.ema_decay))
            opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=10_000)
            start = time.perf_counter()
            train_one_epoch(model, ema, opt, sched, x, y, args, g, None, "bench", quiet=True)
            full.append(len(x) / (time.perf_counter() - start))

            model = MLP(dropout=0.1)
            opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
            xn = normalize(x)
            start = time.perf_counter()
            for idx in torch.randperm(len(x)).split(args.batch_size):
                loss = F.cross_entropy(model(xn[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            bare.append(len(x) / (time.perf_counter() - start))
        overhead = [b / f - 1 for f, b in zip(full, bare, strict=True)]
        rows.append(
            f"| {threads} | {fmt(full, ' images/s')} | {fmt(bare, ' images/s')} | "
            f"**{fmt([o * 100 for o in overhead], '%')}** |"
        )
    torch.set_num_threads(before)
    return rows


def time_to_accuracy() -> list[str]:
    """Wall time of whole train.py runs, data loading to written weights; the default recipe takes about 13 minutes."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in (["--fast"], []):
            start = time.perf_counter()
            out = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "train.py"),
                    *recipe,
                    "--quiet",
                    "--out",
                    str(Path(tmp) / "bench.safetensors"),
                    "--report",
                    str(Path(tmp) / "report"),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            wall = time.perf_counter() - start
            found = re.search(r"best validation accuracy .*test accuracy ([\d.]+)%", out)
            if found is None:
                raise RuntimeError(f"train.py printed no test accuracy: {out[-500:]}")
            acc = found.group(1)
            name = " ".join(["python train.py", *recipe])
            rows.append(f"| `{name}` | {wall / 60:.1f} min | {acc}% |")
    return rows


def in_process_section(repeats: int) -> str:
    rows, _ = in_process(repeats)
    return f"""## In process: `Predictor`, images/s
{stamp("in-process", repeats, unit="repeats")} One torch thread, as in the server;
28×28 PNGs.

| batch | decode + preprocess | model forward | both |
| --- | --- | --- | --- |
{chr(10).join(rows)}
"""


def training_section(repeats: int) -> str:
    return f"""## Training
{stamp("training", repeats, unit="epochs")} One epoch of 55,000 images, batch 128:
train.py's loop (augmentation on the batch, EMA, schedule) against a bare forward/backward loop of the same
model on tensors already in memory, both with the same number of torch threads. Goal: at most 40% on top.

| torch threads | train.py | bare loop | cost on top |
| --- | --- | --- | --- |
{chr(10).join(training(repeats))}

Whole runs of train.py on this CPU (seed 0, default threads): data loading, every epoch's validation,
calibration, the report and the weights included. The goal is 99.0% on the test set.

| command | wall time | test accuracy |
| --- | --- | --- |
{chr(10).join(time_to_accuracy())}
"""
