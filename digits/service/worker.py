"""What one worker process holds for the routes, made once by the lifespan (Worker.start in main.py) and handed to
each route as one dependency (WorkerDep): a test can override it (app.dependency_overrides) instead of patching
the environment.

One dependency, and async: FastAPI solves every Depends on every request, and runs a plain `def` one in AnyIO's
threadpool (one thread here, THREADPOOL_SIZE). Seven small sync dependencies on /predict cut `make run` to 0.35×
of its requests per second before they were split out (688 against 2,029 a second, wrk, medians of 5 rounds);
made async, 0.82×; as this one worker, 0.955× (2,257 against 2,373, 7 rounds alternated).
"""

import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from anyio import CapacityLimiter
from fastapi import Depends, HTTPException, Request

from digits.feedback.ids import PredictionIds, load_secret
from digits.feedback.store import FeedbackStore
from digits.i18n.message import N_, Message
from digits.inference.predictor import Predictor, Prepared
from digits.service.answers import Answers, Costly
from digits.service.batcher import MicroBatcher
from digits.service.config import Settings
from digits.service.schemas import PredictionOut

Batcher = MicroBatcher[bytes | Prepared, PredictionOut | Costly]


class Receiving:
    """The bytes of unfinished uploads that a worker holds, within its budget: sixty slow 10 MiB uploads held
    574 MB. One per worker; one event loop, so no lock."""

    def __init__(self) -> None:
        self.held = 0

    @asynccontextmanager
    async def upload(self, budget: int) -> AsyncIterator[Callable[[int], None]]:
        """Counts one upload's bytes while it arrives, and gives them back when it is read or refused."""
        mine = 0

        def held(more: int) -> None:
            nonlocal mine
            mine += more
            self.held += more
            if self.held > budget:
                busy = N_("the service is busy receiving other uploads; send it again in a few seconds")
                raise HTTPException(503, detail=Message(busy), headers={"Retry-After": "5"})

        try:
            yield held
        finally:
            self.held -= mine


@dataclass(frozen=True)
class Worker:
    settings: Settings
    predictor: Predictor
    secret: bytes
    ids: PredictionIds
    store: FeedbackStore
    answers: Answers
    batcher: Batcher  # /predict's micro-batches, on a thread of their own: the model's
    decoders: CapacityLimiter  # the threads that decode costly uploads beside it (Settings.decode_threads)
    receiving: Receiving

    @classmethod
    def start(cls, settings: Settings) -> "Worker":
        predictor = Predictor(settings.weights, settings.max_image_pixels)
        secret = load_secret(settings.prediction_secret.get_secret_value())
        ids = PredictionIds(secret, settings.feedback_ttl_s)
        answers = Answers(predictor, ids)
        return cls(
            settings=settings,
            predictor=predictor,
            secret=secret,
            ids=ids,
            store=FeedbackStore(settings.database_url),
            answers=answers,
            batcher=MicroBatcher(answers.micro_batch, settings.micro_batch, CapacityLimiter(1)),
            decoders=CapacityLimiter(settings.decode_threads),
            receiving=Receiving(),
        )


async def worker(request: Request) -> Worker:
    return request.app.state.worker


WorkerDep = Annotated[Worker, Depends(worker)]


async def operator(request: Request, worker: WorkerDep) -> None:
    """With STATS_TOKEN set, only whoever holds it (the operators, their Prometheus) sees what the service counts."""
    given = request.headers.get("authorization", "")
    if worker.settings.stats_token and not hmac.compare_digest(
        given.encode(), f"Bearer {worker.settings.stats_token}".encode()
    ):
        raise HTTPException(
            401, detail=Message(N_("this needs the operators' token: send it as Authorization: Bearer <STATS_TOKEN>")),
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
