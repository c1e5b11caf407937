"""The digit-recognition service: an upload page at /upload and a JSON API at /predict.

    uvicorn main:app --reload        # then open http://localhost:8000/upload

Limits come from the environment; see Settings and the README.
"""

import asyncio
import base64
import gc
import hmac
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import numpy as np
import torch
from anyio import CapacityLimiter
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from python_multipart.multipart import parse_options_header
from sqlalchemy.exc import DBAPIError
from starlette.datastructures import FormData, State, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from batcher import MicroBatcher
from edge import BodyLimit, SecurityHeaders
from explain import explain, runner_up
from feedback import (
    DEFAULT_DATABASE_URL,
    BadPredictionId,
    ExpiredPredictionId,
    FeedbackStore,
    PredictionIds,
    TooManyCorrections,
    client_key,
    load_secret,
)
from observability import NOT_DIGITS, PREDICTIONS, UNCERTAIN, WORKERS, Observability, render_metrics, setup_access_log
from predict import DEFAULT_WEIGHTS, Prediction, Predictor, Prepared, to_png
from preprocess import DEFAULT_MAX_PIXELS, ImageError, ImageTooLarge, NoDigitFound, TooManyMarks
from segment import MAX_DIGITS, TooManyDigits, read_number

HERE = Path(__file__).resolve().parent
T = TypeVar("T")
templates = Jinja2Templates(directory=HERE / "templates")


def sentence(detail: str) -> str:
    """An error's detail as the page shows it: a sentence, capitalized, with a full stop."""
    return detail[:1].upper() + detail[1:] + ("" if detail.endswith((".", "?", "!")) else ".")


templates.env.filters["sentence"] = sentence

UPLOAD_HINT = (
    "send the image as multipart field 'file' (curl -F file=@digit.png) or as a raw image body "
    "(curl --data-binary @digit.png -H 'Content-Type: image/png')"
)

# A 28x28 PNG of noise, the largest input image, makes an id of about 1,400 characters; a number's id
# carries all its digits' images, and a 32-digit number stays well under this.
MAX_ID_CHARS = 65536
# Uploads to /predict that share one pass of the model at most: under load a batch's first upload waits
# for the others' decoding, so this bounds the time that batching adds to it (about 0.2 ms an upload).
MICRO_BATCH = 32
LABEL = r"^[0-9]{1,64}$"  # a right number, as a string of digits
ID_CHARS = r"^[A-Za-z0-9_.-]+$"  # a prediction id is URL-safe base64 and dots (itsdangerous)
# Threads that decode /predict uploads too costly for the model's thread, beside it and AnyIO's threadpool:
# two, so that one slow decode leaves another upload a thread (Pillow's decoders let go of the GIL).
DECODE_THREADS = 2
# The estimated decoding time one /predict/batch may use (formats.decode_ms): past it, files are refused unread.
BATCH_BUDGET_MS = 500.0
# An upload this small, estimated to decode within CHEAP_MS, is prepared on the model's thread with the rest of
# its micro-batch: a 28×28 PNG takes 0.3 ms in all. Anything costlier (a phone photo, at 30 ms) is prepared
# apart. The size bounds what parsing the file's structure costs before the estimate is known: 16 KB hold at
# most 1,365 PNG chunks, 4 ms for Pillow to read.
CHEAP_MS, CHEAP_BYTES = 1.0, 16 * 1024
# /feedback's JSON: the longest prediction id, and room for the rest.
FEEDBACK_BODY_BYTES = MAX_ID_CHARS + 1024


@dataclass(frozen=True)
class Settings:
    weights: Path = DEFAULT_WEIGHTS
    max_upload_bytes: int = 10 * 1024 * 1024
    max_receiving_bytes: int = 64 * 1024 * 1024  # of all the uploads a worker is receiving at once
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_batch_files: int = 256
    max_number_digits: int = MAX_DIGITS
    micro_batch: int = MICRO_BATCH
    request_timeout_s: float = 30.0
    torch_threads: int = 1
    threadpool_size: int = 1
    decode_threads: int = DECODE_THREADS
    batch_budget_ms: float = BATCH_BUDGET_MS
    database_url: str = DEFAULT_DATABASE_URL
    feedback_ttl_s: int = 3600  # whole seconds: the signed time is in seconds
    feedback_per_hour: int = 60  # corrections one client address may make in an hour
    stats_token: str = ""  # when set, /metrics and /feedback/stats ask for it as a bearer token

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        return cls(
            weights=Path(env.get("WEIGHTS_PATH", cls.weights)),
            max_upload_bytes=int(env.get("MAX_UPLOAD_BYTES", cls.max_upload_bytes)),
            max_receiving_bytes=int(env.get("MAX_RECEIVING_BYTES", cls.max_receiving_bytes)),
            max_image_pixels=int(env.get("MAX_IMAGE_PIXELS", cls.max_image_pixels)),
            max_batch_files=int(env.get("MAX_BATCH_FILES", cls.max_batch_files)),
            max_number_digits=int(env.get("MAX_NUMBER_DIGITS", cls.max_number_digits)),
            micro_batch=int(env.get("MICRO_BATCH", cls.micro_batch)),
            request_timeout_s=float(env.get("REQUEST_TIMEOUT_S", cls.request_timeout_s)),
            torch_threads=int(env.get("TORCH_THREADS", cls.torch_threads)),
            threadpool_size=int(env.get("THREADPOOL_SIZE", cls.threadpool_size)),
            decode_threads=int(env.get("DECODE_THREADS", cls.decode_threads)),
            batch_budget_ms=float(env.get("BATCH_BUDGET_MS", cls.batch_budget_ms)),
            database_url=env.get("DATABASE_URL", cls.database_url),
            feedback_ttl_s=int(env.get("FEEDBACK_TTL_S", cls.feedback_ttl_s)),
            feedback_per_hour=int(env.get("FEEDBACK_PER_HOUR", cls.feedback_per_hour)),
            stats_token=env.get("STATS_TOKEN", cls.stats_token),
        )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = Settings.from_env()
    # One image is 0.24 M multiply-adds: more intra-op threads only add hand-off cost (bench/RESULTS.md), and
    # the threadpool already runs requests side by side.
    torch.set_num_threads(settings.torch_threads)
    # Sync endpoints run in AnyIO's threadpool, 40 threads by default. Inference holds the GIL between
    # torch and Pillow calls, so extra inference threads mostly queue for it, and every handoff waits
    # out the interpreter's switch interval: two batches side by side read a third fewer images than one
    # after the other (bench/RESULTS.md). The event loop keeps reading uploads meanwhile; scale with
    # uvicorn --workers. /predict's micro-batches have a thread of their own, and its costly uploads
    # DECODE_THREADS, so that neither waits for the other, nor for the sync endpoints.
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_size
    app.state.settings = settings
    app.state.predictor = Predictor(settings.weights, settings.max_image_pixels)
    secret = load_secret()
    app.state.ids = PredictionIds(secret, settings.feedback_ttl_s)
    app.state.secret = secret
    app.state.feedback = FeedbackStore(settings.database_url)
    app.state.batcher = MicroBatcher(partial(answers, app.state), settings.micro_batch, CapacityLimiter(1))
    app.state.decoders = CapacityLimiter(settings.decode_threads)
    setup_access_log()
    WORKERS.inc()
    # Everything loaded so far lives as long as the worker. A full collection walked all of it (260,000
    # objects, 80 ms) every few seconds under load, and that pause was the p99; frozen, it is skipped.
    gc.freeze()
    yield
    gc.unfreeze()
    WORKERS.dec()
    app.state.feedback.close()


# FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the service itself, not from a CDN.
app = FastAPIOffline(
    title="Handwritten digit recognition",
    description="A 784-256-128-10 MLP trained on MNIST. Upload a photo, scan or drawing of one digit, or of a "
    "whole number (/predict/number).",
    version="1.0.0",
    lifespan=lifespan,
)
app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
app.add_middleware(BodyLimit, limits={"/feedback": FEEDBACK_BODY_BYTES, "/upload/feedback": FEEDBACK_BODY_BYTES})
app.add_middleware(SecurityHeaders)
app.add_middleware(Observability)


EXPLANATION = (
    "with ?explain=true: why this digit, as a 28×28 RGB PNG, base64-encoded like input_image. The input's ink is "
    "grey; orange marks the ink that pushed the answer towards `digit`, blue the ink that pushed it away. When "
    "the answer is uncertain between two digits (uncertain, and not not_a_digit), it shows what sets `digit` "
    "apart from the second likeliest."
)
# ?explain=true: costs about 0.7 ms a digit (explain.py), and nothing when it isn't asked for.
Explain = Annotated[bool, Query(description="add an `explanation` picture to each digit's answer")]


class PredictionOut(BaseModel):
    digit: int = Field(ge=0, le=9, description="the most likely digit")
    confidence: float = Field(ge=0, le=1, description="the probability of that digit")
    probabilities: list[float] = Field(min_length=10, max_length=10, description="probabilities of 0 to 9")
    uncertain: bool = Field(description="true when the model isn't confident: maybe not a single, clear digit")
    not_a_digit: bool = Field(
        description="true when the image doesn't look like a digit at all (uncertain is true too); false when "
        "the model is only unsure which digit it is"
    )
    prediction_id: str = Field(
        description="names this prediction in POST /feedback, for FEEDBACK_TTL_S seconds; "
        "signed, so any replica sharing PREDICTION_SECRET accepts it"
    )
    input_image: str = Field(description="the 28×28 image the model saw, as a base64-encoded PNG")
    hint: str | None = Field(
        None, description="what to do next: set when the image seems to hold several digits, or no digit at all"
    )
    explanation: str | None = Field(default=None, description=EXPLANATION)


class NumberDigitOut(BaseModel):
    digit: int = Field(ge=0, le=9)
    confidence: float = Field(ge=0, le=1)
    probabilities: list[float] = Field(min_length=10, max_length=10)
    uncertain: bool
    box: list[int] = Field(min_length=4, max_length=4, description="x, y, width, height in the upload's pixels")
    input_image: str = Field(description="the 28×28 image the model saw for this digit, as a base64-encoded PNG")
    explanation: str | None = Field(default=None, description=EXPLANATION)


class NumberOut(BaseModel):
    number: str = Field(description="the digits, left to right")
    prediction_id: str = Field(description="names this reading in POST /feedback, whose label is the right number")
    digits: list[NumberDigitOut]
    confidence: float = Field(ge=0, le=1, description="the probability that every digit is right")
    uncertain: bool = Field(description="true when a digit, or where the digits were told apart, is doubtful")


class BatchError(BaseModel):
    error: str = Field(description="why this file could not be read; the other files are unaffected")


class BatchOut(BaseModel):
    predictions: list[PredictionOut | BatchError]


class FeedbackIn(BaseModel):
    prediction_id: str = Field(
        max_length=MAX_ID_CHARS, pattern=ID_CHARS, description="from the prediction's answer, exactly as given"
    )
    label: Annotated[int, Field(ge=0, le=9)] | Annotated[str, Field(pattern=LABEL)] = Field(
        description="the right digit, or for a whole number the right number as a string of digits"
    )


class FeedbackOut(BaseModel):
    id: int
    prediction_id: str
    predicted: int | str
    label: int | str


class FeedbackStats(BaseModel):
    total: int = Field(description="corrections of single digits")
    numbers: int = Field(description="corrections of whole numbers")
    by_label: dict[str, int] = Field(description="corrections per true digit")
    by_predicted: dict[str, int] = Field(description="corrections per digit the model had said")


class Health(BaseModel):
    status: str


class ModelInfo(BaseModel):
    architecture: str
    parameters: int
    test_accuracy: float | None
    sha256: str
    metadata: dict[str, Any] = Field(description="what train.py recorded with the weights: its figures and recipe")


@dataclass
class Upload:
    data: bytes
    filename: str | None = None
    number: bool = False  # the page's form asked to read a whole number


STATUS = {NoDigitFound: 422, TooManyDigits: 422, TooManyMarks: 422, ImageTooLarge: 413}


def http_error(e: ImageError) -> HTTPException:
    """400 for an unreadable file, 413 for absurd dimensions, 422 when there is no digit."""
    return HTTPException(STATUS.get(type(e), 400), detail=str(e))


def b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def explanations(state: State, predictions: list[Prediction], explained: bool) -> list[str | None]:
    """Each prediction's explanation as base64 (explain.py); None each when not asked for."""
    if not explained:
        return [None] * len(predictions)
    return [b64(e.png) for e in explain(state.predictor.model, predictions)]


def to_outs(state: State, predictions: list[Prediction], explained: bool) -> list[PredictionOut]:
    pictures = explanations(state, predictions, explained)
    return [to_out(state, p, picture) for p, picture in zip(predictions, pictures, strict=True)]


def to_out(state: State, p: Prediction, explanation: str | None = None) -> PredictionOut:
    """The answer for one prediction, with the signed id that lets the user correct it."""
    PREDICTIONS.labels(str(p.digit)).inc()
    if p.uncertain:
        UNCERTAIN.inc()
    if p.not_a_digit:
        NOT_DIGITS.inc()
    png = to_png(p.image)
    # Rounded as the probabilities are (Predictor.classify), here only: measurements keep every digit. A
    # correction stores the confidence that was shown.
    confidence = round(p.confidence, 6)
    prediction_id = state.ids.issue(png, p.digit, confidence, state.predictor.sha256)
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
    )


def classify(request: Request, upload: Upload, explained: bool = False) -> PredictionOut:
    try:
        return to_outs(request.app.state, [request.app.state.predictor.predict(upload.data)], explained)[0]
    except ImageError as e:
        raise http_error(e) from e


class Costly:
    """The micro-batch's answer for an upload too costly to decode on the model's thread: prepare it apart."""


COSTLY = Costly()


def answers(state: State, items: list[bytes | Prepared]) -> list[PredictionOut | Costly | Exception]:
    """The answers for a micro-batch of /predict uploads, in one forward pass. A raw upload cheap to decode is
    prepared here, which saves it a thread hand-off; a costly one is handed back undecoded, to come back
    prepared."""
    out: dict[int, PredictionOut | Costly | Exception] = {}
    ready: list[tuple[int, Prepared]] = []
    for i, item in enumerate(items):
        try:
            prepared = item if isinstance(item, tuple) else state.predictor.prepare_within(item, CHEAP_MS, CHEAP_BYTES)
        except ImageError as e:
            out[i] = e.with_traceback(None)  # see Predictor.predict_many
            continue
        if prepared is None:
            out[i] = COSTLY
        else:
            ready.append((i, prepared))
    predictions = state.predictor.finish([p for _, p in ready]) if ready else []
    for (i, _), prediction in zip(ready, predictions, strict=True):
        out[i] = to_out(state, prediction)
    return [out[i] for i in range(len(items))]


async def unless_gone(request: Request, work: Awaitable[T]) -> T:
    """The result of work, which is cancelled if the client hangs up first: a request still waiting for a thread
    or for the model is dropped. (A thread already running can't be stopped; the bounds keep its work short.)"""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    # nginx's code for a request whose client closed the connection; nobody reads it.
    raise HTTPException(499, detail="the client closed the connection before the answer was ready")


async def disconnected(request: Request) -> None:
    """Returns when the client has gone: once the body is read, the server's next message says so."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it passes the limit and with 408 when it trickles in too slowly."""
    settings: Settings = request.app.state.settings
    limit = settings.max_upload_bytes
    too_large = HTTPException(413, detail=f"the upload is over the limit of {limit:,} bytes; send a smaller image")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    # Joined once at the end: growing one buffer chunk by chunk re-copies it as it grows, which cost a
    # 3 MB photo about 9 ms of memcpy, a quarter of its whole prediction.
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(settings.request_timeout_s), receiving() as held:
            async for chunk in request.stream():
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise too_large
                held(len(chunk), settings.max_receiving_bytes)
    except TimeoutError as e:
        raise HTTPException(
            408, detail=f"the upload took over {settings.request_timeout_s:g} s; check the connection and send it again"
        ) from e
    except ClientDisconnect as e:
        raise HTTPException(400, detail="the upload was cut off before it ended; send it again") from e
    return b"".join(chunks)


RECEIVING = [0]  # bytes of unfinished uploads this worker holds; one event loop, so no lock


@asynccontextmanager
async def receiving() -> AsyncIterator[Callable[[int, int], None]]:
    """Counts an upload's bytes into RECEIVING while it arrives: sixty slow 10 MiB uploads held 574 MB."""
    mine = 0

    def held(more: int, budget: int) -> None:
        nonlocal mine
        mine += more
        RECEIVING[0] += more
        if RECEIVING[0] > budget:
            raise HTTPException(
                503, detail="the service is busy receiving other uploads; send it again in a few seconds",
                headers={"Retry-After": "5"},
            )  # fmt: skip

    try:
        yield held
    finally:
        RECEIVING[0] -= mine


async def multipart_form(request: Request, max_files: int, too_many: HTTPException) -> FormData:
    """The multipart form, parsed from the capped body in memory; more than max_files files raises too_many."""
    body = await read_body(request)

    async def stream() -> AsyncGenerator[bytes]:
        yield body

    # A body cut off before its closing boundary is refused whole: Starlette would leave its last part half-read.
    boundary = parse_options_header(request.headers.get("content-type", ""))[1].get(b"boundary", b"")
    if boundary and b"--" + boundary + b"--" not in body[-len(boundary) - 1024 :]:  # room for an epilogue
        raise HTTPException(
            400, detail=f"the multipart body ends before its closing boundary, so it was cut off; {UPLOAD_HINT}"
        )
    parser = MultiPartParser(request.headers, stream(), max_files=max_files, max_fields=max_files + 10)
    # The body is already in memory and capped; keep the parts there instead of spooling past 1 MB to disk.
    parser.spool_max_size = len(body) + 1
    try:
        form = await parser.parse()
    except MultiPartException as e:
        # Starlette says "too many files" only through its message.
        if e.message.startswith("Too many files"):
            raise too_many from e
        raise HTTPException(400, detail=f"the multipart body is malformed ({e.message}); {UPLOAD_HINT}") from e
    return form


async def files_in(form: FormData, field: str) -> list[Upload]:
    """The files of a form field, read; every part of the form is closed after, since Starlette keeps each in a
    spooled file of its own."""
    try:
        return [Upload(await f.read(), f.filename) for f in form.getlist(field) if isinstance(f, UploadFile)]
    finally:
        await form.close()


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def image_upload(request: Request) -> Upload:
    """One image, from multipart field 'file' or from the raw body."""
    ctype = content_type(request)
    if ctype == "multipart/form-data":
        too_many = HTTPException(400, detail="send one file per request to /predict; use /predict/batch for several")
        form = await multipart_form(request, 1, too_many)
        files = await files_in(form, "file")
        if not files:
            raise HTTPException(422, detail=f"no file in the upload; {UPLOAD_HINT}")
        files[0].number = form.get("mode") == "number"
        return files[0]
    if ctype.startswith("image/") or ctype in ("application/octet-stream", ""):
        body = await read_body(request)
        if not body:
            raise HTTPException(422, detail=f"the request has no image; {UPLOAD_HINT}")
        return Upload(body)
    raise HTTPException(415, detail=f"Content-Type {ctype} is not an image; {UPLOAD_HINT}")


async def batch_upload(request: Request) -> list[Upload]:
    """Up to max_batch_files images from the repeated multipart field 'files'."""
    limit = request.app.state.settings.max_batch_files
    if content_type(request) != "multipart/form-data":
        raise HTTPException(
            415, detail="send the images as multipart, repeating field 'files' (curl -F files=@a.png -F files=@b.png)"
        )
    too_many = HTTPException(413, detail=f"at most {limit} files per batch; split the upload")
    files = await files_in(await multipart_form(request, limit, too_many), "files")
    if not files:
        raise HTTPException(422, detail="no files in the upload; repeat multipart field 'files', one per image")
    return files


IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
BATCH_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }
        }
    },
}
ERROR_CODES = [
    (400, "the file is not a readable image, or the multipart body is malformed"),
    (408, "the upload arrived too slowly"),
    (413, "the upload, the image or the batch is too large"),
    (415, "unsupported Content-Type"),
    (422, "no file, or no digit found in the image"),
]
ERRORS: dict[int | str, dict[str, Any]] = {code: {"description": text} for code, text in ERROR_CODES}
PAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": f"the upload page again, saying why: {text}", "content": {"text/html": {}}}
    for code, text in ERROR_CODES
}


@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A sentence, as every other error is: where and what, never the input itself, which may be megabytes."""
    errors = exc.errors()
    if errors and errors[0]["type"] == "json_invalid":
        why = errors[0].get("ctx", {}).get("error", "")
        return JSONResponse({"detail": f"the body is not valid JSON ({why}); see /docs for what to send"}, 400)
    problems: dict[str, str] = {}  # one per field: pydantic reports a union's members apart
    for e in errors:
        field = str(e["loc"][1]) if len(e["loc"]) > 1 else "the body"
        if e["type"] == "missing":
            problems.setdefault(field, f"{field} is missing")
        else:
            problems.setdefault(
                field, f"{field} must be {EXPECTED[field]}" if field in EXPECTED else f"{field}: {e['msg']}"
            )
    return JSONResponse({"detail": "; ".join(problems.values())[:500] + "; see /docs for what to send"}, 422)


# What a field must be, said whole where pydantic's messages would name one member of its union at a time.
EXPECTED = {
    "label": 'the right digit, 0 to 9, or for a whole number the right number as a string of digits, such as "2026"'
}


def openapi() -> dict[str, Any]:
    """FastAPI's schema, with the 422 that invalid_request() sends: a sentence, as every error is."""
    schema = FastAPI.openapi(app)
    schema["components"]["schemas"]["HTTPValidationError"] = {
        "title": "HTTPValidationError",
        "type": "object",
        "properties": {"detail": {"title": "Detail", "type": "string"}},
        "required": ["detail"],
    }
    schema["components"]["schemas"].pop("ValidationError", None)
    return schema


app.openapi = openapi  # type: ignore[method-assign]


@app.exception_handler(405)
async def method_not_allowed(request: Request, exc: HTTPException) -> JSONResponse:
    # Starlette's Allow names only the first route on the path; /upload has a GET and a POST route.
    allowed = sorted(
        {
            method
            for route in request.app.routes
            if route.matches(request.scope)[0] != Match.NONE
            for method in getattr(route, "methods", ())
        }
    )
    return JSONResponse(
        {"detail": f"{request.method} is not allowed here; use {' or '.join(allowed)}"},
        status_code=405,
        headers={"Allow": ", ".join(allowed)},
    )


@app.get("/", include_in_schema=False)
def index() -> RedirectResponse:
    return RedirectResponse("/upload")


# The inference endpoints are async, each handing its work to a thread with unless_gone(), so that work still
# queued when its client hangs up is dropped. /predict hands its upload to the micro-batcher, whose batches
# run on the model's own thread: an upload cheap to decode (CHEAP_MS) is prepared there, with one thread
# hand-off for the whole batch (bench/RESULTS.md, Profile); a costly one is prepared on a decoding thread
# first, so that its decoding never holds back another upload's answer.
@app.post("/predict", responses=ERRORS, openapi_extra={"requestBody": IMAGE_BODY})
async def predict(
    request: Request, upload: Annotated[Upload, Depends(image_upload)], explain: Explain = False
) -> PredictionOut:
    """Predict the digit in one image, sent as multipart field `file` or as the raw body."""
    state = request.app.state
    if explain:  # the page's requests, one at a time: no micro-batch to join
        return await in_thread(request, partial(classify, request, upload, True))
    try:
        answer = await state.batcher.submit(upload.data)
        if isinstance(answer, Costly):
            decoding = anyio.to_thread.run_sync(state.predictor.prepare, upload.data, limiter=state.decoders)
            prepared = await unless_gone(request, decoding)
            answer = await unless_gone(request, state.batcher.submit(prepared))
    except ImageError as e:
        raise http_error(e) from e
    assert isinstance(answer, PredictionOut), "a prepared upload is never handed back"
    return answer


async def in_thread(request: Request, work: Callable[[], T]) -> T:
    return await unless_gone(request, anyio.to_thread.run_sync(work))


@app.post("/predict/number", responses=ERRORS, openapi_extra={"requestBody": IMAGE_BODY})
async def predict_number(
    request: Request, upload: Annotated[Upload, Depends(image_upload)], explain: Explain = False
) -> NumberOut:
    """Read a whole number: every digit in one image, left to right, each with its box in the image."""
    return await in_thread(request, partial(number_out, request, upload, explain))


def number_out(request: Request, upload: Upload, explained: bool = False) -> NumberOut:
    try:
        reading = read_number(request.app.state.predictor, upload.data, request.app.state.settings.max_number_digits)
    except ImageError as e:
        raise http_error(e) from e
    pictures = explanations(request.app.state, [d.prediction for d in reading.digits], explained)
    digits = [
        NumberDigitOut(digit=d.prediction.digit, confidence=round(d.prediction.confidence, 6),
                       probabilities=d.prediction.probabilities, uncertain=d.prediction.uncertain, box=list(d.box),
                       input_image=b64(to_png(d.prediction.image)), explanation=picture)
        for d, picture in zip(reading.digits, pictures, strict=True)
    ]  # fmt: skip
    # The digits' inputs side by side, one image for the correction to keep with the number.
    crops = to_png(np.hstack([d.prediction.image for d in reading.digits]))
    confidence = round(reading.confidence, 6)
    prediction_id = request.app.state.ids.issue(crops, reading.number, confidence, request.app.state.predictor.sha256)
    return NumberOut(number=reading.number, prediction_id=prediction_id, digits=digits,
                     confidence=confidence, uncertain=reading.uncertain)  # fmt: skip


@app.post("/predict/batch", responses=ERRORS, openapi_extra={"requestBody": BATCH_BODY})
async def predict_batch(
    request: Request, uploads: Annotated[list[Upload], Depends(batch_upload)], explain: Explain = False
) -> BatchOut:
    """Predict many images in one call; a bad image gets an `error` entry in its place."""
    return await in_thread(request, partial(batch_out, request, uploads, explain))


def batch_out(request: Request, uploads: list[Upload], explained: bool) -> BatchOut:
    state = request.app.state
    results = state.predictor.predict_many([u.data for u in uploads], state.settings.batch_budget_ms)
    answers = iter(to_outs(state, [r for r in results if not isinstance(r, ImageError)], explained))
    return BatchOut(
        predictions=[BatchError(error=str(r)) if isinstance(r, ImageError) else next(answers) for r in results]
    )


@app.get("/upload", response_class=HTMLResponse)
def upload_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "upload.html")


async def optional_upload(request: Request) -> Upload | HTTPException:
    # The page shows the error itself, so it takes the failure as a value instead of a JSON answer.
    try:
        return await image_upload(request)
    except HTTPException as e:
        return e


@app.post("/upload", response_class=HTMLResponse, responses=PAGE_ERRORS, openapi_extra={"requestBody": IMAGE_BODY})
def upload_result(
    request: Request, upload: Annotated[Upload | HTTPException, Depends(optional_upload)]
) -> HTMLResponse:
    """The result page for the plain HTML form; a bad upload gets the form back with the reason."""
    try:
        if isinstance(upload, HTTPException):
            raise upload
        if upload.number:
            number = {"number": number_out(request, upload, explained=True), "filename": upload.filename}
            return templates.TemplateResponse(request, "number.html", number)
        prediction = classify(request, upload, explained=True)
    except HTTPException as e:
        return templates.TemplateResponse(request, "upload.html", {"error": e.detail}, status_code=e.status_code)
    context = {"prediction": prediction, "runner_up": runner_up(prediction.probabilities), "filename": upload.filename}
    return templates.TemplateResponse(request, "result.html", context)


class Unchanged(Exception):
    """The page's form sent back the model's own answer: nothing to correct."""


def record_feedback(request: Request, correction: FeedbackIn, confirmations: bool = True) -> FeedbackOut:
    """Stores the correction. The model's own answer sent back is stored too, as the API takes it (it says that a
    doubtful answer was right); with confirmations False, as the page's form takes it, it raises Unchanged."""
    try:
        seen = request.app.state.ids.read(correction.prediction_id)
    except ExpiredPredictionId as e:
        ttl = request.app.state.settings.feedback_ttl_s
        window = f"{ttl / 60:g} minutes" if ttl >= 60 else f"{ttl:g} s"
        raise HTTPException(
            404,
            detail=f"this prediction has expired: corrections are taken for {window} after "
            "the prediction (FEEDBACK_TTL_S); predict again, then send the right digit or number",
        ) from e
    except BadPredictionId as e:
        raise HTTPException(
            400,
            detail="this prediction_id was not issued by this service, or was changed or cut "
            "short; send it exactly as the prediction returned it",
        ) from e
    label = correction.label
    if seen.number and not isinstance(label, str):
        raise HTTPException(422, detail='this prediction is of a whole number: send the right number as a string '
                                        'of digits, such as "2026"')  # fmt: skip
    if not seen.number and isinstance(label, str):
        if len(label) != 1:
            raise HTTPException(422, detail="this prediction is of one digit: send the right digit, 0 to 9")
        label = int(label)
    if not confirmations and label == seen.predicted:
        raise Unchanged()
    state = request.app.state
    # request.client is the address uvicorn trusts: a proxy's X-Forwarded-For only from --forwarded-allow-ips.
    client = client_key(state.secret, request.client.host if request.client else "")
    try:
        row = state.feedback.record(seen, label, client, state.settings.feedback_per_hour)
    except TooManyCorrections as e:
        raise HTTPException(
            429,
            detail=f"this address has sent {state.settings.feedback_per_hour} corrections in the last hour, the most "
            "one client may; try again later",
            headers={"Retry-After": "3600"},
        ) from e
    except DBAPIError as e:
        raise HTTPException(503, detail="the correction can't be stored right now; try again in a minute") from e
    return FeedbackOut(id=row, prediction_id=correction.prediction_id, predicted=seen.predicted, label=label)


@app.post(
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
def feedback(request: Request, correction: FeedbackIn) -> FeedbackOut:
    """Record the right digit for an earlier prediction, named by its `prediction_id`."""
    return record_feedback(request, correction)


def operator(request: Request) -> None:
    """With STATS_TOKEN set, only whoever holds it (the operators, their Prometheus) sees what the service counts."""
    token = request.app.state.settings.stats_token
    given = request.headers.get("authorization", "")
    if token and not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise HTTPException(
            401, detail="this needs the operators' token: send it as Authorization: Bearer <STATS_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip


@app.get("/feedback/stats", dependencies=[Depends(operator)], responses={401: {"description": "STATS_TOKEN needed"}})
def feedback_stats(request: Request) -> FeedbackStats:
    """How many corrections there are, per true digit and per digit the model had said."""
    try:
        return FeedbackStats(**request.app.state.feedback.stats())
    except DBAPIError as e:
        raise HTTPException(503, detail="the corrections can't be read right now; try again in a minute") from e


@app.post("/upload/feedback", response_class=HTMLResponse, status_code=201, include_in_schema=False)
def feedback_form(
    request: Request,
    prediction_id: Annotated[str, Form(max_length=MAX_ID_CHARS)],
    label: Annotated[str, Form(pattern=LABEL)],
) -> HTMLResponse:
    """The correction from the result page's plain form."""
    try:
        saved = record_feedback(request, FeedbackIn(prediction_id=prediction_id, label=label), confirmations=False)
    except HTTPException as e:
        return templates.TemplateResponse(request, "upload.html", {"error": e.detail}, status_code=e.status_code)
    except Unchanged:
        return templates.TemplateResponse(request, "thanks.html", {"saved": None, "label": label}, status_code=200)
    return templates.TemplateResponse(request, "thanks.html", {"saved": saved}, status_code=201)


# Async, so that health checks and scrapes answer at once even while the inference thread is busy.
@app.get("/healthz")
async def healthz() -> Health:
    return Health(status="ok")


@app.get("/metrics", include_in_schema=False, dependencies=[Depends(operator)])
async def metrics() -> Response:
    return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)


@app.get("/model")
def model_info(request: Request) -> ModelInfo:
    predictor: Predictor = request.app.state.predictor
    meta = predictor.metadata
    return ModelInfo(
        architecture=meta.get("architecture", "MLP 784-256-128-10"),
        parameters=sum(p.numel() for p in predictor.model.parameters()),
        test_accuracy=float(meta["test_accuracy"]) if "test_accuracy" in meta else None,
        sha256=predictor.sha256,
        metadata={key: parsed(value) for key, value in meta.items()},
    )


def parsed(value: str) -> Any:
    """A metadata value as what it holds: safetensors keeps only strings, so train.py wrote numbers, lists and
    objects as JSON."""
    try:
        return json.loads(value, parse_constant=not_json)
    except ValueError:  # json.JSONDecodeError among them
        return value  # a plain string, such as the torch version


def not_json(constant: str) -> None:
    """NaN and Infinity, which Python's json reads but no JSON answer may hold."""
    raise ValueError(constant)
