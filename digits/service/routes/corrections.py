"""Corrections: the right digit or number for an earlier prediction, named by its signed id, and their counts."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request

from digits.feedback.ids import Seen, client_key
from digits.i18n.message import N_, Message
from digits.inference.weights import model_id
from digits.service.observability import CORRECTIONS
from digits.service.schemas import FeedbackIn, FeedbackOut, FeedbackStats
from digits.service.worker import WorkerDep, client_of, operator

# /feedback's JSON: the longest prediction id, and room for the rest (main.py's BodyLimit).
FEEDBACK_BODY_BYTES = 65536 + 1024

router = APIRouter()


async def client(request: Request, worker: WorkerDep) -> str:
    """The keyed hash that counts a client's corrections, of the address that the sandbox's turns key too."""
    return client_key(worker.secret, client_of(request))


Client = Annotated[str, Depends(client)]


def checked_label(seen: Seen, label: int | str) -> int | str:
    """The label, of the prediction's own kind: a digit for a digit, a string of digits for a whole number."""
    if seen.number and not isinstance(label, str):
        whole = N_('this prediction is of a whole number: send the right number as a string of digits, such as "2026"')
        raise HTTPException(422, detail=Message(whole))
    if not seen.number and isinstance(label, str):
        if len(label) != 1:
            raise HTTPException(
                422, detail=Message(N_("this prediction is of one digit: send the right digit, 0 to 9"))
            )
        return int(label)
    return label


def stored(worker: WorkerDep, who: Client, seen: Seen, label: int | str, prediction_id: str) -> FeedbackOut:
    row = worker.store.record(seen, label, who, worker.settings.feedback_per_hour)
    CORRECTIONS.labels("number" if seen.number else "digit", model_id(seen.model_sha256)).inc()
    return FeedbackOut(
        id=row, prediction_id=prediction_id, predicted=seen.predicted, label=label, model=model_id(seen.model_sha256)
    )


@router.post(
    "/feedback",
    status_code=201,
    responses={
        400: {"description": "the body is not JSON, or the id is not genuine"},
        404: {"description": "the prediction has expired"},
        413: {"description": f"the body is over {FEEDBACK_BODY_BYTES:,} bytes"},
        429: {"description": "this client has sent FEEDBACK_PER_HOUR corrections in the last hour"},
        503: {"description": "the database is unavailable"},
    },
)
def feedback(correction: FeedbackIn, worker: WorkerDep, who: Client) -> FeedbackOut:
    """Record the right digit for an earlier prediction, named by its `prediction_id`."""
    # The model's own answer sent back is stored too: it says that a doubtful answer was right.
    seen = worker.ids.read(correction.prediction_id)
    return stored(worker, who, seen, checked_label(seen, correction.label), correction.prediction_id)


@router.get("/feedback/stats", dependencies=[Depends(operator)], responses={401: {"description": "STATS_TOKEN needed"}})
def feedback_stats(worker: WorkerDep) -> FeedbackStats:
    """How many corrections there are, per true digit and per digit the model had said."""
    return FeedbackStats(**worker.store.stats(), model=worker.predictor.model_id)
