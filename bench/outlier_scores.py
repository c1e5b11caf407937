"""Which score should say "not a digit": the candidates measured on the same weights, each at the threshold that
flags the same share of validation digits.

    python bench/outlier_scores.py                   # the shipped weights, validation of seed 0's split
    python bench/outlier_scores.py --weights other.safetensors --shares 0.005 0.01

Each score is chosen on validation only: its threshold is the one under which `share` of the validation digits
fall (MNIST's held-out digits and those drawn as uploads together, as train.py chooses the uncertain
threshold), and what it catches of the held-out outliers (outliers.py) is validation's verdict. Fashion-MNIST,
the letters and MNIST's test digits are measured, as the service reads them, and choose nothing. The scores:
  confidence     the calibrated probability of the likeliest digit, as `uncertain` uses it
  top two        the two likeliest digits' probabilities together, as `not_a_digit` used it until issue 32
  energy         T·log Σ exp(logits / T) at the weights' temperature (Liu et al., 2020), as `not_a_digit` uses it
  max logit      the largest logit (Hendrycks et al., 2022)
  Mahalanobis    minus the distance to the nearest class mean in the 128 features before the last layer, with
                 the covariance shared by the classes (Lee et al., 2018), fitted on the training split
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digits.imaging.errors import ImageError
from digits.imaging.png import encode
from digits.inference.predictor import Predictor
from digits.inference.weights import DEFAULT_WEIGHTS
from digits.training import dataset, report
from digits.training.calibration import energy
from digits.training.recipe import Recipe
from digits.training.splits import load_splits, with_outliers

Scores = dict[str, np.ndarray]
SCORES = ("confidence", "top two", "energy", "max logit", "Mahalanobis")


class Scorer:
    """Every candidate score of a batch of 28×28 inputs; higher is more like a digit."""

    def __init__(self, predictor: Predictor, train_x: np.ndarray, train_y: np.ndarray) -> None:
        self.predictor = predictor
        features = self.features(train_x)
        self.means = np.stack([features[train_y == c].mean(0) for c in range(10)])
        centred = features - self.means[train_y]
        self.precision = np.linalg.inv(centred.T @ centred / len(centred) + 1e-3 * np.eye(centred.shape[1]))

    def features(self, x: np.ndarray) -> np.ndarray:
        """The 128 activations that the last layer reads."""
        (w2, b2), _ = self.predictor.forward.layers[1:]
        return np.maximum(np.maximum(self.predictor.forward.first(x), 0) @ w2 + b2, 0)

    def __call__(self, x: np.ndarray) -> Scores:
        if len(x) == 0:  # a set the service refuses whole, as it does blank images
            return dict.fromkeys(SCORES, np.zeros(0))
        features = self.features(x)
        _, (w3, b3) = self.predictor.forward.layers[1:]
        logits = features @ w3 + b3
        scaled = logits / self.predictor.temperature
        probs = np.exp(scaled - scaled.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        ranked = np.sort(probs, 1)
        top = logits.max(1)
        apart = features[:, None] - self.means[None]
        distance = np.einsum("nck,kl,ncl->nc", apart, self.precision, apart).min(1)
        return {
            "confidence": ranked[:, -1],
            "top two": ranked[:, -1] + ranked[:, -2],
            "energy": energy(torch.from_numpy(logits), self.predictor.temperature).numpy(),
            "max logit": top,
            "Mahalanobis": -distance,
        }


def served(predictor: Predictor, images: list[Image.Image]) -> tuple[np.ndarray, int]:
    """The 28×28 inputs the service makes of these images, and how many it refuses outright."""
    inputs, refused = [], 0
    for im in images:
        try:
            inputs.append(predictor.prepare(encode(im))[0])
        except ImageError:
            refused += 1
    return np.stack(inputs) if inputs else np.zeros((0, 28, 28), np.float32), refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="weights (default: the shipped ones)")
    parser.add_argument(
        "--shares", type=float, nargs="+", default=[0.005, 0.0075, 0.01], help="validation digits flagged"
    )
    args = parser.parse_args()
    predictor = Predictor(args.weights)
    # The split and the outliers that training held out, without the training digits' redrawn pens.
    recipe = Recipe(seed=int(predictor.metadata.get("seed", 0)), pens=0)
    data = with_outliers(recipe, load_splits(recipe, torch.device("cpu")))
    scorer = Scorer(predictor, data.train_x[:, 0].numpy(), data.train_y.numpy())
    digits = [scorer(data.val_x[:, 0].numpy()), scorer(data.val_real_x[:, 0].numpy())]
    assert data.val_outlier_x is not None, "with_outliers() holds some out"
    outliers = scorer(data.val_outlier_x[:, 0].numpy())
    test_images, _ = dataset.load(train=False)
    rng = np.random.default_rng(0)
    sets = {"MNIST test": [Image.fromarray(d) for d in test_images.numpy()[:2000]]} | report.non_digits(rng)
    measured = {}
    for name, images in sets.items():
        inputs, refused = served(predictor, images)
        measured[name] = (scorer(inputs), refused, len(images))
    print("| score | validation digits flagged | held-out outliers flagged | " + " | ".join(measured) + " |")
    print("| --- " * (3 + len(measured)) + "|")
    for score in outliers:
        validation = np.concatenate([d[score] for d in digits])
        for share in args.shares:
            threshold = np.quantile(validation, share)
            cells = [f"{(np.sum(s[score] < threshold) + refused) / n:.1%}" for s, refused, n in measured.values()]
            print(f"| {score} | {share:.2%} | {np.mean(outliers[score] < threshold):.1%} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
