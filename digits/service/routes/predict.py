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
from anyio import CapacityLimiter
from fastapi import APIRouter, Depends, Query, Request

from digits.inference.predictor import Prepared
from digits.service.answers import Answers, AnswersDep, Costly
from digits.service.batcher import MicroBatcher
from digits.service.deps import PredictorDep, SettingsDep
from digits.service.disconnects import in_thread, unless_gone
from digits.service.openapi import BATCH_BODY, ERRORS, IMAGE_BODY
from digits.service.schemas import BatchOut, NumberOut, PredictionOut
from digits.service.uploads import BatchUpload, ImageUpload

router = APIRouter()
# ?explain=true: costs about 0.7 ms a digit (explain.py), and nothing when it isn't asked for.
Explain = Annotated[bool, Query(description="add an `explanation` picture to each digit's answer")]
Batcher = MicroBatcher[bytes | Prepared, PredictionOut | Costly]


def batcher(request: Request) -> Batcher:
    return request.app.state.batcher


def decoders(request: Request) -> CapacityLimiter:
    """The threads that decode costly uploads, beside the model's thread (Settings.decode_threads)."""
    return request.app.state.decoders


def micro_batcher(answers: Answers, size: int) -> Batcher:
    """/predict's micro-batcher: its batches run on a thread of their own, the model's."""
    return MicroBatcher(answers.micro_batch, size, CapacityLimiter(1))


@router.post("/predict", responses=ERRORS, openapi_extra={"requestBody": IMAGE_BODY})
async def predict(
    request: Request,
    upload: ImageUpload,
    answers: AnswersDep,
    predictor: PredictorDep,
    batched: Annotated[Batcher, Depends(batcher)],
    decoding: Annotated[CapacityLimiter, Depends(decoders)],
    explain: Explain = False,
) -> PredictionOut:
    """Predict the digit in one image, sent as multipart field `file` or as the raw body."""
    if explain:  # the page's requests, one at a time: no micro-batch to join
        return await in_thread(request, partial(answers.digit, upload.data, True))
    answer = await batched.submit(upload.data)
    if isinstance(answer, Costly):
        prepared = await unless_gone(
            request, anyio.to_thread.run_sync(predictor.prepare, upload.data, limiter=decoding)
        )
        answer = await unless_gone(request, batched.submit(prepared))
    assert isinstance(answer, PredictionOut), "a prepared upload is never handed back"
    return answer


@router.post("/predict/number", responses=ERRORS, openapi_extra={"requestBody": IMAGE_BODY})
async def predict_number(
    request: Request, upload: ImageUpload, answers: AnswersDep, settings: SettingsDep, explain: Explain = False
) -> NumberOut:
    """Read a whole number: every digit in one image, left to right, each with its box in the image."""
    return await in_thread(request, partial(answers.number, upload.data, settings.max_number_digits, explain))


@router.post("/predict/batch", responses=ERRORS, openapi_extra={"requestBody": BATCH_BODY})
async def predict_batch(
    request: Request, uploads: BatchUpload, answers: AnswersDep, settings: SettingsDep, explain: Explain = False
) -> BatchOut:
    """Predict many images in one call; a bad image gets an `error` entry in its place."""
    work = partial(answers.batch, [u.data for u in uploads], settings.batch_budget_ms, explain)
    return await in_thread(request, work)
