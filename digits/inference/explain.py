"""Why this digit? Which parts of the input pushed the model towards its answer, as a picture.

Occlusion: the 28×28 input is tiled in 49 patches of 4×4, and each is blanked in turn; how far the answer's
log-odds fall (for an uncertain answer, its lead over the runner-up) is the credit of that patch's ink.
Blank paper is 0 in the input, so only ink is ever credited. Compared with gradient × input of the same score on
1,000 validation digits (bench/explanations.py): blanking the 160 pixels that occlusion credits most, 8 at a time,
leaves the answer 0.23 of its probability on average against gradient × input's 0.26 (random ink: 0.63), and
0.22 against 0.25 for digits drawn as uploads. It cost 0.55 ms a digit against 0.43, and since a blanked patch
is taken out of the first layer's sums (Forward.blanked) 0.15 ms. That test blanks pixels as occlusion does,
which favours it; what decided it is that a credited patch of stroke reads better to a person than gradient ×
input's speckle of single pixels, some warm and some cool side by side.
"""

from dataclasses import dataclass

import numpy as np

from digits.imaging.png import to_png
from digits.inference.forward import Forward
from digits.inference.predictor import Prediction

PATCH = 4  # 7×7 patches tile the input exactly
# Each patch's 16 pixels, as indices into the 784 of a flattened input.
PATCHES = np.arange(28 * 28).reshape(7, PATCH, 7, PATCH).transpose(0, 2, 1, 3).reshape(49, PATCH * PATCH)
WARM = np.array([255, 122, 0], np.float32)  # ink that pushed towards the answer: orange
COOL = np.array([0, 132, 255], np.float32)  # ink that pushed away from it: blue, told apart from orange by most
INK = 0.35  # the input's own ink, dimmed under the colours so that the strokes still show where they are
# A credit this share of the largest takes the full colour: one patch that stands out doesn't wash out the rest.
SATURATE_AT = 0.6
# Predictions explained in one pass: 16 × 50 first-layer sums of 256 floats are 0.8 MB, where a batch of 256 at
# once would take 13 MB.
CHUNK = 16


@dataclass
class Explanation:
    png: bytes  # 28×28 RGB: the input's ink in grey, orange where it pushed towards `towards`, blue where away
    towards: int
    against: int | None  # the runner-up, when the answer is uncertain: the picture is of what separates the two


def credits(forward: Forward, images: np.ndarray, towards: list[int], against: list[int | None]) -> np.ndarray:
    """Each ink pixel's credit in N×28×28 images in [0,1]: how far the log-odds of towards, or the logit of towards
    less that of against where one is given, falls when the pixel's patch is blanked. One forward pass of 50N inputs."""
    logits = forward.blanked(images, PATCHES)  # N×50×10: the input, then with each patch blanked
    rows = np.arange(len(images))
    answer = logits[rows, :, towards]
    others = logits.copy()
    others[rows, :, towards] = -np.inf
    # Unlike log p, the log-odds don't flatten out near certainty. The others' log-sum-exp by hand: scipy's
    # took 200 µs of these 500 numbers.
    top = others.max(axis=2)
    log_odds = answer - top - np.log(np.exp(others - top[..., None]).sum(axis=2))
    runner_up = [a if a is not None else t for t, a in zip(towards, against, strict=True)]
    margin = answer - logits[rows, :, runner_up]
    chosen = np.array([a is not None for a in against])[:, None]
    score = np.where(chosen, margin, log_odds)
    drop = (score[:, :1] - score[:, 1:]).reshape(-1, 7, 7)
    return np.kron(drop, np.ones((PATCH, PATCH))) * (images > 0)


def picture(image: np.ndarray, credit: np.ndarray) -> bytes:
    """The input's ink in grey, with orange and blue over it in proportion to each pixel's credit."""
    scale = max(float(np.abs(credit).max()) * SATURATE_AT, 1e-12)
    strength = np.sqrt(np.clip(np.abs(credit) / scale, 0, 1))[..., None]  # the square root lifts the faint ones
    colour = np.where((credit > 0)[..., None], WARM, COOL)
    grey = (INK * 255 * image)[..., None]
    return to_png((grey * (1 - strength) + colour * strength) / 255)


def explain(forward: Forward, predictions: list[Prediction]) -> list[Explanation]:
    """One picture per prediction, CHUNK of them to a pass of the model."""
    if not predictions:
        return []
    towards = [p.digit for p in predictions]
    against = [runner_up(p.probabilities) if p.uncertain and not p.not_a_digit else None for p in predictions]
    images = np.stack([p.image for p in predictions])
    found = np.concatenate([
        credits(forward, images[i : i + CHUNK], towards[i : i + CHUNK], against[i : i + CHUNK])
        for i in range(0, len(images), CHUNK)
    ])  # fmt: skip
    return [
        Explanation(picture(image, credit), t, a)
        for image, credit, t, a in zip(images, found, towards, against, strict=True)
    ]


def runner_up(probabilities: list[float]) -> int:
    """The second likeliest digit."""
    return sorted(range(10), key=probabilities.__getitem__)[-2]
