"""Answers from predictions: each digit's answer with its signed id, its explanation when asked for, and its count
in /metrics, whichever route gave it; and the micro-batch's work on the model's thread."""

import base64

import numpy as np

from digits.feedback.ids import PredictionIds
from digits.i18n.languages import Language
from digits.i18n.message import Message
from digits.imaging.errors import ImageError
from digits.imaging.png import to_png
from digits.inference.explain import explain
from digits.inference.predictor import Prediction, Predictor, Prepared
from digits.inference.segment import Reading
from digits.service.observability import CONFIDENCE, NOT_DIGITS, PREDICTIONS, UNCERTAIN
from digits.service.schemas import BatchError, BatchOut, NumberDigitOut, NumberOut, PredictionOut

# An upload this small, estimated to decode within CHEAP_MS, is prepared on the model's thread with the rest of
# its micro-batch: a 28×28 PNG takes 0.3 ms in all. Anything costlier (a phone photo, at 30 ms) is prepared
# apart. The size bounds what parsing the file's structure costs before the estimate is known: 16 KB hold at
# most 1,365 PNG chunks, 4 ms for Pillow to read.
CHEAP_MS, CHEAP_BYTES = 1.0, 16 * 1024
MICRO_BATCHED = "/predict"  # the one route whose uploads join micro-batches


class Costly:
    """The micro-batch's answer for an upload too costly to decode on the model's thread: prepare it apart."""


COSTLY = Costly()


def b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def counted(p: Prediction, endpoint: str) -> Prediction:
    """Counts a digit answered into /metrics: every digit of every route passes here once."""
    PREDICTIONS.labels(endpoint, str(p.digit)).inc()
    CONFIDENCE.labels(endpoint).observe(p.confidence)
    if p.uncertain:
        UNCERTAIN.labels(endpoint).inc()
    if p.not_a_digit:
        NOT_DIGITS.labels(endpoint).inc()
    return p


def hinted(out: PredictionOut, language: Language) -> PredictionOut:
    """The answer with its hint in the reader's language: Prediction.hint is the hint's English message id."""
    if out.hint is not None:
        out.hint = language.say(Message(out.hint))
    return out


class Answers:
    """Builds the answers of one worker's predictor, signed with its prediction ids."""

    def __init__(self, predictor: Predictor, ids: PredictionIds) -> None:
        self.predictor = predictor
        self.ids = ids

    def explanations(self, predictions: list[Prediction], explained: bool) -> list[str | None]:
        """Each prediction's explanation as base64 (explain.py); None each when not asked for."""
        if not explained:
            return [None] * len(predictions)
        return [b64(e.png) for e in explain(self.predictor.forward, predictions)]

    def to_outs(self, predictions: list[Prediction], explained: bool, endpoint: str) -> list[PredictionOut]:
        pictures = self.explanations(predictions, explained)
        return [self.to_out(p, endpoint, picture) for p, picture in zip(predictions, pictures, strict=True)]

    def to_out(self, p: Prediction, endpoint: str, explanation: str | None = None) -> PredictionOut:
        """The answer for one prediction, with the signed id that lets the user correct it; endpoint counts it."""
        counted(p, endpoint)
        png = to_png(p.image)
        # Rounded as the probabilities are (Predictor.classify), here only: measurements keep every digit. A
        # correction stores the confidence that was shown.
        confidence = round(p.confidence, 6)
        prediction_id = self.ids.issue(png, p.digit, confidence, self.predictor.sha256)
        return PredictionOut(
            hint=p.hint,
            digit=p.digit,
            confidence=confidence,
            probabilities=p.probabilities,
            uncertain=p.uncertain,
            not_a_digit=p.not_a_digit,
            input_image=b64(png),
            prediction_id=prediction_id,
            explanation=explanation,
            model=self.predictor.model_id,
        )

    def digit(self, prepared: Prepared, endpoint: str, explained: bool = False) -> PredictionOut:
        return self.to_outs(self.predictor.finish([prepared]), explained, endpoint)[0]

    def number(self, reading: Reading, endpoint: str, explained: bool = False) -> NumberOut:
        predictions = [counted(d.prediction, endpoint) for d in reading.digits]
        pictures = self.explanations(predictions, explained)
        digits = [
            NumberDigitOut(digit=d.prediction.digit, confidence=round(d.prediction.confidence, 6),
                           probabilities=d.prediction.probabilities, uncertain=d.prediction.uncertain,
                           box=list(d.box), input_image=b64(to_png(d.prediction.image)), explanation=picture)
            for d, picture in zip(reading.digits, pictures, strict=True)
        ]  # fmt: skip
        # The digits' inputs side by side, one image for the correction to keep with the number.
        crops = to_png(np.hstack([p.image for p in predictions]))
        confidence = round(reading.confidence, 6)
        prediction_id = self.ids.issue(crops, reading.number, confidence, self.predictor.sha256)
        return NumberOut(number=reading.number, prediction_id=prediction_id, digits=digits,
                         confidence=confidence, uncertain=reading.uncertain, model=self.predictor.model_id)  # fmt: skip

    def batch(
        self, prepared: list[Prepared | ImageError], explained: bool, endpoint: str, language: Language
    ) -> BatchOut:
        """Every upload's answer, or why it could not be read, in the reader's language."""
        results = self.predictor.finish_many(prepared)
        answers = iter(self.to_outs([r for r in results if not isinstance(r, ImageError)], explained, endpoint))
        return BatchOut(
            predictions=[
                BatchError(error=language.say(r.message))
                if isinstance(r, ImageError)
                else hinted(next(answers), language)
                for r in results
            ],
            model=self.predictor.model_id,
        )

    def micro_batch(self, items: list[bytes | Prepared]) -> list[PredictionOut | Costly | Exception]:
        """The answers for a micro-batch of /predict uploads, in one forward pass. A raw upload cheap to decode is
        prepared here, which saves it a thread hand-off; a costly one is handed back undecoded, to come back
        prepared."""
        out: dict[int, PredictionOut | Costly | Exception] = {}
        ready: list[tuple[int, Prepared]] = []
        for i, item in enumerate(items):
            try:
                prepared = (
                    item if isinstance(item, tuple) else self.predictor.prepare_within(item, CHEAP_MS, CHEAP_BYTES)
                )
            except ImageError as e:
                out[i] = e.with_traceback(None)  # see Predictor.predict_many
                continue
            if prepared is None:
                out[i] = COSTLY
            else:
                ready.append((i, prepared))
        predictions = self.predictor.finish([p for _, p in ready]) if ready else []
        for (i, _), prediction in zip(ready, predictions, strict=True):
            out[i] = self.to_out(prediction, MICRO_BATCHED)
        return [out[i] for i in range(len(items))]
