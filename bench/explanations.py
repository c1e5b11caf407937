"""Occlusion against gradient × input, for the page's "why this digit?" (explain.py): which is more faithful, and
what each costs.

    python bench/explanations.py                 # 1,000 validation digits (seed 0's split), as they are and redrawn
    python bench/explanations.py --digits 200

Faithfulness is a deletion curve: blank the pixels that a method credits most towards the answer, a few at a
time, and watch the answer's probability fall. The faster it falls (the smaller the area under the curve),
the better the picture points at what the model used. The digits are training digits that train.py holds out
for validation: the test set chooses nothing. Timing is the median of 7 runs over all the digits, in this
process, one digit at a time as the service explains them.
"""

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digits.inference import explain
from digits.inference.predictor import Predictor
from digits.inference.weights import DEFAULT_WEIGHTS
from digits.training import dataset, redraw
from digits.training.splits import normalize
from model import MLP, model_from_state

Method = Callable[[Predictor, np.ndarray, int], np.ndarray]
STEPS = 20  # points on the deletion curve
PER_STEP = 8  # pixels blanked per point: 160 in all, more than most digits' ink


@functools.cache
def module(predictor: Predictor) -> MLP:
    """The predictor's weights in torch's module, for the gradient."""
    return model_from_state(predictor.state)


def occlusion(predictor: Predictor, image: np.ndarray, digit: int) -> np.ndarray:
    """What the service draws (explain.credits)."""
    return explain.credits(predictor.forward, image[None], [digit], [None])[0]


def gradient(predictor: Predictor, image: np.ndarray, digit: int) -> np.ndarray:
    """Gradient × input of the same score, the answer's log-odds, against blank paper."""
    x = torch.from_numpy(image[None].astype(np.float32)).requires_grad_()
    logits = module(predictor)(normalize(x))[0]
    others = torch.cat([logits[:digit], logits[digit + 1 :]])
    (logits[digit] - torch.logsumexp(others, dim=0)).backward()
    assert x.grad is not None
    return (x.grad * x).detach().numpy()[0]


@torch.inference_mode()
def deletion_area(predictor: Predictor, image: np.ndarray, digit: int, credit: np.ndarray) -> float:
    """The mean probability of the answer as its most credited pixels are blanked, PER_STEP at a time."""
    order = np.argsort(-credit, axis=None)
    curve = np.repeat(image.reshape(1, -1), STEPS + 1, axis=0)
    for step in range(1, STEPS + 1):
        curve[step, order[: step * PER_STEP]] = 0
    x = torch.from_numpy(curve.reshape(-1, 28, 28).astype(np.float32))
    return float(torch.softmax(module(predictor)(normalize(x)), dim=1)[:, digit].mean())


def median_ms(method: Method, predictor: Predictor, images: np.ndarray, digits: list[int]) -> float:
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for image, digit in zip(images, digits, strict=True):
            method(predictor, image, digit)
        runs.append((time.perf_counter() - start) * 1000 / len(images))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description="Compare occlusion with gradient × input.")
    parser.add_argument("--digits", type=int, default=1000, help="validation digits (default: 1000)")
    parser.add_argument(
        "--seed", type=int, default=0, help="train.py's seed, whose validation split is used (default: 0)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    predictor = Predictor(DEFAULT_WEIGHTS)
    images, labels = dataset.load(train=True)
    validation = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))[: args.digits]
    digits, kept = images[validation].numpy(), labels[validation].numpy()
    redrawn, _ = redraw.validation_inputs(digits, kept, args.seed)
    print(f"{args.digits} validation digits; deletion area (lower is more faithful), ms per digit")
    for name, inputs in (("MNIST", digits.astype(np.float32) / 255), ("as uploads", redrawn)):
        answers = [p.digit for p in predictor.classify(inputs)]
        for method in (gradient, occlusion):
            area = np.mean([
                deletion_area(predictor, image, d, method(predictor, image, d))
                for image, d in zip(inputs, answers, strict=True)
            ])  # fmt: skip
            ms = median_ms(method, predictor, inputs[:200], answers[:200])
            print(f"{name:>10}  {method.__name__:>9}: deletion area {area:.3f}, {ms:.2f} ms per digit")
        random_area = np.mean([
            deletion_area(predictor, image, d, np.random.default_rng(0).random((28, 28)) * (image > 0))
            for image, d in zip(inputs, answers, strict=True)
        ])  # fmt: skip
        print(f"{name:>10}  random ink: deletion area {random_area:.3f}")
    predictions = predictor.classify(redrawn[:200])
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for p in predictions:
            explain.explain(predictor.forward, [p])
        runs.append((time.perf_counter() - start) * 1000 / len(predictions))
    print(f"explain.explain(), the picture included: {statistics.median(runs):.2f} ms per digit")


if __name__ == "__main__":
    main()
