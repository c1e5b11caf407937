"""The prediction API: one digit (/predict), a whole number (/predict/number), and many files (/predict/batch).

The routes are async, each handing its work to a thread with unless_gone(), so that work still queued when its
client hangs up is dropped. /predict hands its upload to the micro-batcher, whose batches run on the model's own
thread: an upload cheap to decode (answers.CHEAP_MS) is prepared there, with one thread hand-off for the whole
batch (docs/benchmarks.md, Profile); a costly one is prepared in the sandbox first (sandbox.py), under its
deadline and in its client's turn, so that its decoding never holds back another upload's answer. Every route
reads its uploads the same way (Worker.prepared, Worker.prepared_in_order, Worker.reading).
"""

from functools import partial
from typing import Annotated

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
    endpoint = endpoint_of(request.scope)
    if explain:  # the page's requests, one at a time: no micro-batch to join
        prepared = await worker.prepared(request, upload.data)
        answer: PredictionOut | Costly = await in_thread(
            request, partial(worker.answers.digit, prepared, endpoint, True)
        )
    else:
        answer = await worker.batcher.submit(upload.data)
    if isinstance(answer, Costly):
        prepared = await worker.prepared_apart(request, upload.data)
        answer = await unless_gone(request, worker.batcher.submit(prepared))
    assert isinstance(answer, PredictionOut), "a prepared upload is never handed back"
    # The language is looked for only when there is something to say in it.
    return hinted(answer, chosen(request.scope)) if answer.hint is not None else answer


@router.post("/predict/number", responses=ERRORS, openapi_extra={"requestBody": IMAGE_BODY})
async def predict_number(
    request: Request, upload: ImageUpload, worker: WorkerDep, explain: Explain = False
) -> NumberOut:
    """Read a whole number: every digit in one image, left to right, each with its box in the image."""
    reading = await worker.reading(request, upload.data)
    return await in_thread(request, partial(worker.answers.number, reading, endpoint_of(request.scope), explain))


@router.post("/predict/batch", responses=ERRORS, openapi_extra={"requestBody": BATCH_BODY})
async def predict_batch(
    request: Request, uploads: BatchUpload, worker: WorkerDep, explain: Explain = False
) -> BatchOut:
    """Predict many images in one call; a bad image gets an `error` entry in its place."""
    prepared = await worker.prepared_in_order(request, [upload.data for upload in uploads])
    work = partial(worker.answers.batch, prepared, explain, endpoint_of(request.scope), chosen(request.scope))
    return await in_thread(request, work)
