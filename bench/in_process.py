"""The In-process and Training sections of `make bench`: the Predictor's throughput in process, train.py's loop
against a bare one, and whole training runs."""

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's own modules, one folder up

from common import (
    digit_png,
    fmt,
    median_spread,
    per_call,
    stamp,
)
from digits.imaging.decode import grey_pixels, load, open_image
from digits.imaging.fit import fit_and_centre, in_mnist_form
from digits.imaging.groups import several_digits
from digits.imaging.ink import ink_map
from digits.imaging.png import encode
from digits.inference.forward import limit_threads
from digits.inference.predictor import Predictor
from digits.training import dataset
from digits.training.report import phone_photo
from model import model_from_state


def in_process(repeats: int) -> tuple[list[str], float]:
    """Predictor: decode + preprocess per image, and the model forward per batch, on 28x28 PNGs.
    Also returns the median seconds per image at batch 1, everything included."""

    limit_threads(1)  # as the server runs it
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


def canvas_png(digit: np.ndarray) -> bytes:
    """A digit as the page's canvas sends it: 560×560 opaque RGBA, black strokes on white, anti-aliased."""
    from PIL import Image

    big = np.asarray(Image.fromarray(digit).resize((400, 400), Image.Resampling.BICUBIC))
    gray = np.full((560, 560), 255, np.uint8)
    gray[80:480, 80:480] = 255 - big
    return encode(np.dstack([gray, gray, gray, np.full_like(gray, 255)]))


def stages(repeats: int) -> list[str]:
    """Microseconds per upload in each stage of Predictor.predict, and in the whole, on one core."""
    limit_threads(1)
    predictor = Predictor()
    digits = dataset.load(train=False)[0][:50].numpy()
    inputs = {
        "28×28 PNG (MNIST's test digits)": [encode(255 - d) for d in digits],
        "560×560 canvas PNG": [canvas_png(d) for d in digits[:10]],
        "4000×3000 phone photo, JPEG": [phone_photo(digits[0])],
    }
    rows = []
    for name, uploads in inputs.items():
        spent: dict[str, list[float]] = {stage: [] for stage in ("decode", "ink", "fit", "forward", "predict")}
        for _ in range(repeats):
            for data in uploads:
                t0 = time.perf_counter()
                opened = open_image(data)[0]
                # A plain grey PNG already in MNIST's form is read from libspng's pixels, with no Pillow image
                # made, is its own ink and needs no fit (fit.prepared_upload).
                pixels = grey_pixels(opened)
                shortcut = None if pixels is None else in_mnist_form(pixels)
                if shortcut is None:
                    im = load(opened)
                t1 = time.perf_counter()
                ink = ink_map(im) if shortcut is None else shortcut
                t2 = time.perf_counter()
                image = fit_and_centre(ink) if shortcut is None else shortcut
                several_digits(ink)
                t3 = time.perf_counter()
                predictor.classify(image[None])
                t4 = time.perf_counter()
                predictor.predict(data)
                t5 = time.perf_counter()
                for stage, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                    spent[stage].append(seconds * 1e6)
        *parts, whole = spent.values()
        rows.append(f"| {name} | " + " | ".join(f"{median_spread(v)[0]:,.0f}" for v in parts) + f" | {fmt(whole)} |")
    return rows


def forwards(repeats: int) -> list[str]:
    """The MLP's forward pass at batch 1 and 64 in each runtime considered for serving, one thread each."""
    from digits.inference.forward import Forward

    limit_threads(1)
    state = Predictor().state
    model, forward = model_from_state(state), Forward(state)
    (w1, b1), (w2, b2), (w3, b3) = [(torch.from_numpy(w), torch.from_numpy(b)) for w, b in forward.layers]

    @torch.inference_mode()
    def module(x: torch.Tensor) -> torch.Tensor:
        return model(x)

    @torch.inference_mode()
    def addmm(x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(torch.addmm(b1, x, w1))
        return torch.addmm(b3, torch.relu(torch.addmm(b2, h, w2)), w3)

    with torch.inference_mode():
        scripted = torch.jit.freeze(torch.jit.trace(model, torch.zeros(1, 784)).eval())
    runtimes: dict[str, Callable[[np.ndarray], object]] = {
        "torch, the module": lambda x: module(torch.from_numpy(x)),
        "torch, TorchScript (traced, frozen)": lambda x: scripted(torch.from_numpy(x)),
        "torch, addmm on pre-transposed weights": lambda x: addmm(torch.from_numpy(x)),
        "numpy (`digits/inference/forward.py`)": lambda x: forward.head(forward.first(x)),
    }
    try:
        import onnxruntime

        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "mlp.onnx")
            torch.onnx.export(
                model, (torch.zeros(1, 784),), path, input_names=["x"], dynamic_axes={"x": {0: "n"}}, dynamo=False
            )
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        runtimes["onnxruntime"] = lambda x: session.run(None, {"x": x})
    except ImportError:
        pass  # bench/requirements-peers.txt has it; the row is left out elsewhere
    rows = []
    for name, run in runtimes.items():
        cells = []
        for batch in (1, 64):
            x = np.random.default_rng(0).random((batch, 784), dtype=np.float32)
            cells.append(f"{per_call(partial(run, x), repeats, number=2000 // batch):,.1f} µs")
        rows.append(f"| {name} | {' | '.join(cells)} |")
    return rows


def training(repeats: int) -> list[str]:
    """train.py's epoch (augmentation, EMA, schedule) against a bare forward/backward loop on in-memory tensors,
    with one torch thread and with two."""
    import torch.nn.functional as F
    from torch.optim.swa_utils import AveragedModel

    from digits.training.loop import ema_update, train_one_epoch
    from digits.training.recipe import preset
    from digits.training.splits import normalize, to_float
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
{stamp("in-process", repeats, unit="repeats")} One thread, as in the server;
28×28 PNGs.

| batch | decode + preprocess | model forward | both |
| --- | --- | --- | --- |
{chr(10).join(rows)}
"""


def stages_section(repeats: int) -> str:
    return f"""## Stages
{stamp("stages", repeats, unit="passes")} µs per upload, one core: `open_image` and `load`, or libspng's
grey pixels where they are in MNIST's form (decode), `ink_map` (ink), `fit_and_centre` and `several_digits` (fit),
`Predictor.classify` at batch 1 (forward, with the softmax), then `Predictor.predict` whole, alternating with the
stages; the stages without their spread. For the next change, to see where it lands.

| upload | decode | ink | fit | forward | `predict`, whole |
| --- | --- | --- | --- | --- | --- |
{chr(10).join(stages(repeats))}
"""


def forward_section(repeats: int) -> str:
    return f"""## Forward pass
{stamp("forward", repeats, unit="repeats")} µs per call of the MLP's forward pass on one thread, in each
runtime considered for serving. onnxruntime is measured where it is installed (`pip install onnxruntime onnx`);
the service runs numpy, which needs nothing installed (`digits/inference/forward.py` says why).

| runtime | batch 1 | batch 64 |
| --- | --- | --- |
{chr(10).join(forwards(repeats))}
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
