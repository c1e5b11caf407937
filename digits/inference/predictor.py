"""The Predictor: loads and checks the weights once, and answers for uploads with the digit, its calibrated
confidence, and whether to doubt it."""

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from digits.i18n.message import N_
from digits.imaging.decode import DEFAULT_MAX_PIXELS, open_image
from digits.imaging.errors import ImageError
from digits.imaging.fit import prepared_upload
from digits.imaging.groups import several_digits
from digits.inference.forward import Forward
from digits.inference.heap import keep_freed_memory
from digits.inference.weights import (
    DEFAULT_WEIGHTS,
    WeightsError,
    file_sha256,
    load_state,
    model_id,
    sha256_path,
)

Prepared = tuple[np.ndarray, bool]  # an upload's 28×28 input, and whether it seems to hold several digits

DEFAULT_UNCERTAIN_BELOW = 0.5  # for weights that don't record a threshold chosen on validation
# The share of validation digits flagged uncertain: train.py chooses the threshold so (calibration.py). Unseen
# digits come out near 1%, so this keeps under it. Far more flagged in service means the uploads have changed.
UNCERTAIN_SHARE = 0.0075
# The hint that /predict gives with an image of several digits.
SEVERAL_DIGITS = N_("the image seems to hold several digits; POST it to /predict/number to read the whole number")
# The hint for an image that doesn't look like a digit at all.
NOT_A_DIGIT = N_("this doesn't look like a handwritten digit; send a photo, scan or drawing of one digit")
# "Not a digit" is a second decision with a score of its own: the energy, T·log Σ exp(logits / T) (Liu et al.,
# 2020), low where no digit's logit stands out. Trained on outliers (outliers.py), the model keeps every logit
# low for what isn't a digit; at the same share of validation digits, the energy caught 93.8% of validation's
# held-out outliers where the confidence caught 90.8% (bench/outlier_scores.py). train.py chooses its threshold
# so that this share of validation digits fall under it: issue 32's bar for clean pens told "not a digit".
NOT_A_DIGIT_SHARE = 0.005


@dataclass
class Prediction:
    digit: int
    confidence: float
    probabilities: list[float]
    uncertain: bool  # confidence below the threshold recorded with the weights, not a digit, or several digits
    image: np.ndarray  # the 28×28 input the model saw, in [0,1]
    several: bool = False  # the image seems to hold several digits side by side
    not_a_digit: bool = False  # energy below the threshold recorded with the weights: no digit at all

    @property
    def hint(self) -> str | None:
        """What to send instead, when the answer is no single digit."""
        return SEVERAL_DIGITS if self.several else NOT_A_DIGIT if self.not_a_digit else None


class Predictor:
    """Loads the weights once, checks them, and predicts on batches of uploads."""

    def __init__(self, weights: Path = DEFAULT_WEIGHTS, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        weights = Path(weights)
        fix = "run `python train.py` to create it, or restore it with `git checkout -- weights/`"
        if not weights.is_file():
            raise WeightsError(f"weights file {weights} is missing; {fix}")
        self.sha256 = file_sha256(weights)
        recorded = sha256_path(weights)
        if not recorded.is_file():
            raise WeightsError(f"weights file {weights} has no recorded sha256 ({recorded} is missing); {fix}")
        if recorded.read_text().split()[0] != self.sha256:
            raise WeightsError(f"weights file {weights} does not match the sha256 recorded in {recorded}; {fix}")
        try:
            state = load_state(weights)
            with safe_open(str(weights), framework="np") as f:
                metadata = f.metadata() or {}
            self._use(state, metadata, max_pixels)
        except (SafetensorError, ValueError, OSError) as e:
            raise WeightsError(f"weights file {weights} is corrupt ({e}); {fix}") from e

    @classmethod
    def from_state(
        cls, state: Mapping[str, np.ndarray], metadata: dict[str, str], max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> "Predictor":
        """A predictor for weights still in memory (model.numpy_state): train.py measures them before it writes
        the file."""
        predictor = cls.__new__(cls)
        predictor.sha256 = ""  # a file's hash, and there is no file yet
        predictor._use(state, metadata, max_pixels)
        return predictor

    @property
    def validation_flagged(self) -> float | None:
        """The share of validation digits these weights flag uncertain, where they record it; None for weights
        that don't."""
        return float(self.metadata["val_flagged"]) if "val_flagged" in self.metadata else None

    @property
    def model_id(self) -> str:
        """The short id that every answer carries (weights.model_id)."""
        return model_id(self.sha256)

    def _use(self, state: Mapping[str, np.ndarray], metadata: dict[str, str], max_pixels: int) -> None:
        # Every process that reads uploads has a Predictor, and processes forked from it inherit the setting.
        keep_freed_memory()
        self.state = state  # the weights by name; model.model_from_state makes torch's module of them
        self.forward = Forward(state)
        self.metadata = metadata
        self.max_pixels = max_pixels
        self.uncertain_below = float(self.metadata.get("uncertain_below", DEFAULT_UNCERTAIN_BELOW))
        # Weights that record no threshold for it never call an input no digit.
        self.not_a_digit_below = float(self.metadata.get("not_a_digit_below", -math.inf))
        # Fitted on validation at training time, so that a confidence of 0.9 is right about 90% of the time.
        self.temperature = float(self.metadata.get("temperature", 1.0))

    def prepare(self, data: bytes) -> Prepared:
        """Decode and preprocess one upload: the 28×28 input, and whether the image holds several digits side
        by side. Raises an ImageError subclass with a message for the user."""
        prepared = self.prepare_within(data, math.inf)
        assert prepared is not None, "nothing is over an infinite budget"
        return prepared

    def prepare_within(self, data: bytes, budget_ms: float, max_bytes: float = math.inf) -> Prepared | None:
        """prepare(), or None, with nothing decoded, for an upload over max_bytes or whose decoding is estimated to
        take longer than budget_ms (formats.decode_ms)."""
        if len(data) > max_bytes:
            return None
        try:
            im, cost = open_image(data, self.max_pixels)
            if cost > budget_ms:
                return None
            x, ink = prepared_upload(im)
            return x, several_digits(ink)
        except ImageError as e:
            error = copy.copy(e)
        # Raised afresh, outside the handler, so that it carries no traceback, cause or context: those hold the
        # frames with the decoded pixels, and an error kept in a list or a future would keep them alive.
        raise error

    def classify(self, images: np.ndarray) -> list[Prediction]:
        """Predict a batch of preprocessed N×28×28 images."""
        logits = self.forward(images) / np.float32(self.temperature)
        largest = logits.max(axis=1, keepdims=True)
        odds = np.exp(logits - largest)
        total = odds.sum(axis=1, keepdims=True)
        energy = self.temperature * (largest + np.log(total))[:, 0]
        probs = odds / total
        # What round(p, 6) gives each, bit for bit, in one pass: p·10⁶ is exact in float64 for a float32 p, so
        # rint rounds the exact value, half to even, as round does (checked on 5.5 million probabilities). A
        # micro-batch of 32 took 15.5 µs an upload with ten calls of round each, and takes 11.2 (alternated, 15
        # rounds); one upload alone the same within noise.
        shown = np.round(probs.astype(np.float64), 6).tolist()
        nothing = (energy < self.not_a_digit_below).tolist()
        predictions = []
        for row, rounded, image, not_a_digit in zip(probs.tolist(), shown, images, nothing, strict=True):
            top = max(row)
            uncertain = top < self.uncertain_below or not_a_digit
            digit = row.index(top)
            predictions.append(Prediction(digit, top, rounded, uncertain, image, not_a_digit=not_a_digit))
        return predictions

    def predict(self, data: bytes) -> Prediction:
        return self.finish([self.prepare(data)])[0]

    def finish(self, prepared: list[Prepared]) -> list[Prediction]:
        """Predictions for prepared uploads, in one forward pass."""
        # One upload, the usual case, needs no copy: np.stack costs a few µs of a 0.3 ms prediction.
        images = prepared[0][0][None] if len(prepared) == 1 else np.stack([image for image, _ in prepared])
        predictions = self.classify(images)
        return [_several(p, several) for p, (_, several) in zip(predictions, prepared, strict=True)]

    def predict_many(self, uploads: list[bytes]) -> list[Prediction | ImageError]:
        """One result per upload, in order; a bad upload yields its error without failing the rest."""
        prepared: list[Prepared | ImageError] = []
        for data in uploads:
            try:
                prepared.append(self.prepare(data))
            except ImageError as e:
                # Its traceback would hold this frame, and so this list, and so itself: a cycle that waits for
                # the garbage collector, holding the upload (a 1.6 KB WebP held 310 MB of pixels that way).
                prepared.append(e.with_traceback(None))
        return self.finish_many(prepared)

    def finish_many(self, prepared: list[Prepared | ImageError]) -> list[Prediction | ImageError]:
        """finish() for the prepared uploads among these, in one pass; the errors stay in their places."""
        good = [p for p in prepared if not isinstance(p, ImageError)]
        predictions = iter(self.finish(good) if good else [])
        return [p if isinstance(p, ImageError) else next(predictions) for p in prepared]


def _several(p: Prediction, several: bool) -> Prediction:
    """A single-digit answer for an image of several digits is no confident answer."""
    if several:
        p.several = p.uncertain = True
        p.not_a_digit = False  # several digits are digits; the hint says how to read them
    return p
