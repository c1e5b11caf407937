"""What one worker process holds for the routes, made once by the lifespan (Worker.start in main.py) and handed to
each route as one dependency (WorkerDep): a test can override it (app.dependency_overrides) instead of patching
the environment.

One dependency, and async: FastAPI solves every Depends on every request, and runs a plain `def` one in AnyIO's
threadpool (one thread here, THREADPOOL_SIZE). Seven small sync dependencies on /predict cut `make run` to 0.35×
of its requests per second before they were split out (688 against 2,029 a second, wrk, medians of 5 rounds);
made async, 0.82×; as this one worker, 0.955× (2,257 against 2,373, 7 rounds alternated).
"""

import hmac
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Annotated

from anyio import CapacityLimiter
from fastapi import Depends, HTTPException, Request

from digits.feedback.ids import PredictionIds, load_secret
from digits.feedback.store import FeedbackStore
from digits.i18n.message import N_, Message
from digits.imaging.errors import ImageError, ImageTooLarge
from digits.inference.predictor import Predictor, Prepared
from digits.inference.segment import Reading
from digits.service.answers import CHEAP_BYTES, CHEAP_MS, Answers, Costly
from digits.service.batcher import MicroBatcher
from digits.service.config import Settings
from digits.service.disconnects import in_thread, unless_gone
from digits.service.sandbox import Sandbox
from digits.service.schemas import PredictionOut

Batcher = MicroBatcher[bytes | Prepared, PredictionOut | Costly]
NOT_READ = N_(
    "not read: the images before it in this request took all the reading time one request may have; "
    "send this one in another request"
)


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
    sandbox: Sandbox  # the processes that decode what is too costly for the cheap path
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
            sandbox=Sandbox(settings),
            receiving=Receiving(),
        )

    async def prepared(self, request: Request, data: bytes) -> Prepared:
        """An upload's 28×28 input: in process when it is cheap to decode, else in the sandbox, in its client's
        turn. Raises its ImageError."""
        cheap = partial(self.predictor.prepare_within, data, CHEAP_MS, CHEAP_BYTES)
        prepared = await in_thread(request, cheap)
        return prepared if prepared is not None else await self.prepared_apart(request, data)

    async def prepared_in_order(self, request: Request, uploads: list[bytes]) -> list[Prepared | ImageError]:
        """Each upload's 28×28 input, or its error, in order, within the batch's reading budget. The time spent
        reading counts, not an estimate of it: once it passes the budget, the rest go unread, and no file takes
        more than the sandbox's deadline. The cheap uploads up to the next costly one go to a thread together: with
        a hand-off each, batches of 256 28×28 PNGs were read at 2,483 images a second, and are at 5,018 so
        (`python bench/bench.py --only batches`)."""
        deadline = time.monotonic() + self.settings.batch_budget_ms / 1000
        prepared: list[Prepared | ImageError] = []
        while len(prepared) < len(uploads):
            prepared += await in_thread(request, partial(self._cheap_run, uploads[len(prepared) :], deadline))
            if len(prepared) < len(uploads):  # stopped at a costly one
                try:
                    if time.monotonic() > deadline:
                        raise ImageTooLarge(NOT_READ)
                    prepared.append(await self.prepared_apart(request, uploads[len(prepared)]))
                except ImageError as e:
                    prepared.append(e.with_traceback(None))  # see Predictor.predict_many
        return prepared

    def _cheap_run(self, uploads: list[bytes], deadline: float) -> list[Prepared | ImageError]:
        """The uploads' inputs or errors, from the first, up to the first one too costly to decode here; past the
        deadline, every one left is unread."""
        prepared: list[Prepared | ImageError] = []
        for data in uploads:
            if time.monotonic() > deadline:
                return prepared + [ImageTooLarge(NOT_READ) for _ in uploads[len(prepared) :]]
            try:
                cheap = self.predictor.prepare_within(data, CHEAP_MS, CHEAP_BYTES)
            except ImageError as e:
                prepared.append(e.with_traceback(None))
                continue
            if cheap is None:
                break
            prepared.append(cheap)
        return prepared

    async def prepared_apart(self, request: Request, data: bytes) -> Prepared:
        """An upload's 28×28 input, read in the sandbox in its client's turn, and dropped if the client goes."""
        return await unless_gone(request, self.sandbox.prepare(client_of(request), data))

    async def reading(self, request: Request, data: bytes) -> Reading:
        """A whole number's digits, read in the sandbox whatever the upload's size: cutting touching digits apart
        costs by the marks, not the bytes, and the fuzzer found a 13 KB BMP of 120×90 that took 0.19 s."""
        reading = self.sandbox.read(client_of(request), data, self.settings.max_number_digits)
        return await unless_gone(request, reading)

    def close(self) -> None:
        self.sandbox.close()
        self.store.close()


def client_of(request: Request) -> str:
    """Who a request comes from, for the sandbox's turns and the corrections' limit: the address uvicorn trusts,
    a proxy's X-Forwarded-For only from --forwarded-allow-ips."""
    return request.client.host if request.client else ""


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
