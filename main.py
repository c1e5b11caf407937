"""The digit-recognition service: an upload page at /upload and a JSON API at /predict.

    uvicorn main:app --reload        # then open http://localhost:8000/upload

This file assembles the app from digits/service/: its lifespan, middleware, error handlers and routers. Settings
come from the environment (digits/service/config.py; docs/operations.md lists them).
"""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from digits.inference.forward import limit_threads
from digits.paths import STATIC
from digits.service import errors
from digits.service.config import Settings
from digits.service.edge import BodyLimit, SecurityHeaders
from digits.service.observability import WORKERS, Observability, setup_access_log, worker_started
from digits.service.openapi import openapi
from digits.service.routes import corrections, operations, pages, predict
from digits.service.worker import Worker


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = Settings()
    # One image is 0.24 M multiply-adds: more intra-op threads only add hand-off cost (docs/benchmarks.md), and
    # the threadpool already runs requests side by side.
    limit_threads(settings.torch_threads)
    # Sync endpoints run in AnyIO's threadpool, 40 threads by default. Inference holds the GIL between
    # numpy and Pillow calls, so extra inference threads mostly queue for it, and every handoff waits
    # out the interpreter's switch interval: two batches side by side read a third fewer images than one
    # after the other (docs/benchmarks.md). The event loop keeps reading uploads meanwhile; scale with
    # uvicorn --workers. /predict's micro-batches have a thread of their own, and every costly upload goes to
    # the sandbox's processes (digits/service/sandbox.py), so that neither waits for the other, nor for the
    # sync endpoints.
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_size
    app.state.worker = worker = Worker.start(settings)
    setup_access_log()
    worker_started(worker.predictor.model_id, worker.predictor.validation_flagged)
    # Everything loaded so far lives as long as the worker. A full collection walked all of it (260,000
    # objects, 80 ms) every few seconds under load, and that pause was the p99; frozen, it is skipped.
    gc.freeze()
    yield
    gc.unfreeze()
    WORKERS.dec()
    worker.close()


# FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the service itself, not from a CDN.
app = FastAPIOffline(
    title="Handwritten digit recognition",
    description="A 784-256-128-10 MLP trained on MNIST. Upload a photo, scan or drawing of one digit, or of a "
    "whole number (/predict/number).",
    version="1.1.0",  # pyproject.toml's, which tests/unit/test_config.py holds it to
    lifespan=lifespan,
)
app.mount("/static", StaticFiles(directory=STATIC), name="static")
feedback_limit = corrections.FEEDBACK_BODY_BYTES
app.add_middleware(
    BodyLimit, limits={"/feedback": feedback_limit, "/upload/feedback": feedback_limit, "/language": pages.CHOICE_BYTES}
)
app.add_middleware(SecurityHeaders)
app.add_middleware(Observability)
errors.install(app)
for area in (predict, pages, corrections, operations):
    app.include_router(area.router)
app.openapi = partial(openapi, app)  # type: ignore[method-assign]
