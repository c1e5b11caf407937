"""This project's Predictor served by BentoML, one of the peers in bench.py's Peers section.

    cd bench && PEER_WORKERS=2 ../.venv-peers/bin/bentoml serve peer_bentoml:Digits --port 8002
    cd bench && PEER_MAX_BATCH=32 PEER_MAX_LATENCY_MS=5 ../.venv-peers/bin/bentoml serve peer_bentoml:Front

POST /predict takes a raw image body and answers the same fields as this service's /predict. BentoML
reads a service's settings when the class is defined, so they come from the environment.
"""

import os
import sys
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import InvalidArgument

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project's own modules, one folder up

from common import peer_answers
from digits.feedback.ids import PredictionIds, load_secret
from digits.imaging.errors import ImageError
from digits.inference.forward import limit_threads
from digits.inference.predictor import Predictor

WORKERS = int(os.environ.get("PEER_WORKERS", "1"))
THREADS = int(os.environ.get("PEER_THREADS", "1"))
MAX_BATCH = int(os.environ.get("PEER_MAX_BATCH", "32"))
MAX_LATENCY_MS = int(os.environ.get("PEER_MAX_LATENCY_MS", "10"))
SERVICE = {"workers": WORKERS, "threads": THREADS, "logging": {"access": {"enabled": False}}}


class Model:
    """The Predictor, loaded once in each of a service's workers."""

    def __init__(self) -> None:
        limit_threads(1)  # as in this service: one image is too little work to share between threads
        self.predictor = Predictor()
        self.ids = PredictionIds(load_secret(os.environ.get("PREDICTION_SECRET", "")), 3600)

    def answers(self, uploads: list[bytes]) -> list[dict[str, Any] | ImageError]:
        return peer_answers(self.predictor, self.ids, uploads)


def checked(answer: dict[str, Any] | ImageError) -> dict[str, Any]:
    if isinstance(answer, ImageError):
        raise InvalidArgument(str(answer))  # BentoML answers it with 400
    return answer


@bentoml.service(**SERVICE)
class Digits(Model):
    """Each request in a worker's threads, no batching."""

    # A positional-only argument is the whole body, here the raw image.
    @bentoml.api(route="/predict")
    def predict(self, image: bytes, /) -> dict[str, Any]:
        return checked(self.answers([image])[0])


@bentoml.service(**SERVICE)
class Batcher(Model):
    """Adaptive batching. BentoML's batchable API takes a JSON list, so BentoML's way to batch raw uploads is
    this service behind Front, its calls merged into batches of up to PEER_MAX_BATCH."""

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, images: list[bytes]) -> list[dict[str, Any]]:
        return [{"error": str(a)} if isinstance(a, ImageError) else a for a in self.answers(images)]


@bentoml.service(logging={"access": {"enabled": False}}, workers=int(os.environ.get("PEER_FRONT_WORKERS", "1")))
class Front:
    """Takes the raw image and hands it to Batcher."""

    batcher = bentoml.depends(Batcher)

    @bentoml.api(route="/predict")
    async def predict(self, image: bytes, /) -> dict[str, Any]:
        answer = (await self.batcher.to_async.predict([image]))[0]
        if "error" in answer:
            raise InvalidArgument(answer["error"])
        return answer
