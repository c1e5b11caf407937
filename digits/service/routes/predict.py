"""The prediction API: one digit (/predict), a whole number (/predict/number), and many files (/predict/batch).

The routes are async, each handing its work to a thread with unless_gone(), so that work still queued when its
client hangs up is dropped. /predict hands its upload to the micro-batcher, whose batches run on the model's own
thread: an upload cheap to decode (answers.CHEAP_MS) is prepared there, with one thread hand-off for the whole
batch (docs/benchmarks.md, Profile); a costly one is prepared on a decoding thread first, so that its decoding
never holds back another upload's answer.
"""

from functools import partial
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Request

from digits.i18n.languages import chosen
from digits.service.answers import Costly, hinted
from digits.service.disconnects import in_thread, unless_gone
from digits.service.observability import endpoint_of
from digits.service.openapi import BATCH_BODY, ERRORS, IMAGE_BODY
from digits.service.schemas import BatchOut, NumberOut, PredictionOut
from digits.service.uploads import BatchUpload, ImageUpload
from digits.service.worker import WorkerDep

router = APIRouter()
# ?explain=true: costs about 0.24 ms a digit (explain.py), and nothing when it isn't asked for.
Explain = Annotated[bool, Query(description="add an `explanation` picture to each digit's answer")]


@router.post("/predict", responses=ERRORS, openapi_extra={"requestBody": IMAGE_BODY})
async def predict(request: Request, upload: ImageUpload, worker: WorkerDep, explain: Explain = False) -> PredictionOut:
    """Predict the digit in one image, sent as multipart field `file` or as the raw body."""
    if explain:  # the page's requests, one at a time: no micro-batch to join
        work = partial(worker.answers.digit, upload.data, endpoint_of(request.scope), True)
        answer: PredictionOut | Costly = await in_thread(request, work)
    else:
        answer = await worker.batcher.submit(upload.data)
    if isinstance(answer, Costly):
        decoding = anyio.to_thread.run_sync(worker.predictor.prepare, upload.data, limiter=worker.decoders)
        prepared = await unless_gone(request, decoding)
        answer = await unless_gone(request, worker.batcher.submit(prepared))
    assert isinstance(answer, PredictionOut), "a prepared upload is never handed back"
    # The language is looked for only when there is something to say in it.
    return hinted(answer, chosen(request.scope)) if answer.hint is not None else answer


@router.post("/predict/number", responses=ERRORS, openapi_extra={"requestBody": IMAGE_BODY})
async def predict_number(
    request: Request, upload: ImageUpload, worker: WorkerDep, explain: Explain = False
) -> NumberOut:
    """Read a whole number: every digit in one image, left to right, each with its box in the image."""
    number = partial(
        worker.answers.number, upload.data, worker.settings.max_number_digits, endpoint_of(request.scope), explain
    )
    return await in_thread(request, number)


@router.post("/predict/batch", responses=ERRORS, openapi_extra={"requestBody": BATCH_BODY})
async def predict_batch(
    request: Request, uploads: BatchUpload, worker: WorkerDep, explain: Explain = False
) -> BatchOut:
    """Predict many images in one call; a bad image gets an `error` entry in its place."""
    work = partial(
        worker.answers.batch,
        [u.data for u in uploads],
        worker.settings.batch_budget_ms,
        explain,
        endpoint_of(request.scope),
        chosen(request.scope),
    )
    return await in_thread(request, work)
