"""Prometheus metrics and one structured access-log line per request, as plain ASGI middleware.

Plain ASGI rather than BaseHTTPMiddleware: it adds no task or stream copy per request.
Under several workers, PROMETHEUS_MULTIPROC_DIR (set by serve.py) makes every worker write its
metrics there, and /metrics adds them all up (prometheus-client's multiprocess mode): any worker's
scrape gives the same totals.
"""

import json
import logging
import os
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "http_requests_total", "HTTP requests by endpoint, method and status", ["endpoint", "method", "status"]
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from request to the end of the response",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Every digit answered, by endpoint: drift shows first as a climb in the doubtful answers' share.
PREDICTIONS = Counter("predictions_total", "Digits answered, by endpoint and digit", ["endpoint", "digit"])
UNCERTAIN = Counter(
    "predictions_uncertain_total", "Digits answered below the uncertainty threshold, by endpoint", ["endpoint"]
)
NOT_DIGITS = Counter(
    "predictions_not_a_digit_total",
    "Uncertain answers for images that don't look like a digit, by endpoint",
    ["endpoint"],
)
CORRECTIONS = Counter("corrections_total", "Corrections stored, by kind and the model corrected", ["kind", "model"])
CONFIDENCE = Histogram(
    "prediction_confidence",
    "The calibrated confidence of each digit answered, by endpoint",
    ["endpoint"],
    buckets=(0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0),
)
# The model in service, and the share of validation digits it flags (Predictor.validation_flagged): the alert on
# drift compares the share flagged in service with it. 1 for each model a live worker serves.
MODEL = Gauge("digits_model_info", "The model each live worker serves", ["model"], multiprocess_mode="livemax")
VALIDATION_FLAGGED = Gauge(
    "digits_model_validation_flagged_ratio",
    "The share of validation digits the model in service flags uncertain",
    multiprocess_mode="livemax",
)
# Summed over the workers alive now: a killed worker's share is dropped at the next scrape.
IN_PROGRESS = Gauge("http_requests_in_progress", "Requests being served now", multiprocess_mode="livesum")
WORKERS = Gauge("digits_workers", "Worker processes serving the model", multiprocess_mode="livesum")

access_log = logging.getLogger("digits.access")


def setup_access_log() -> None:
    """JSON lines on stderr, unless the host application configured this logger already."""
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False


def worker_started(model: str, validation_flagged: float | None) -> None:
    """A worker serves: it counts in digits_workers, with its model and what that model flags on validation."""
    WORKERS.inc()
    MODEL.labels(model).set(1)
    if validation_flagged is not None:
        VALIDATION_FLAGGED.set(validation_flagged)


def endpoint_of(scope: Scope) -> str:
    """The route's template, not the raw path, so that a scan of random URLs can't blow up the label set."""
    return str(getattr(scope.get("route"), "path", "unmatched"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, so alive
    return True


def render_metrics() -> bytes:
    """The exposition text: this process's metrics, or under several workers every worker's added up."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory is None:
        return generate_latest()
    # A worker killed outright never marks itself dead, so its in-progress requests would be counted forever.
    for live in Path(directory).glob("gauge_live*_*.db"):
        pid = int(live.stem.rsplit("_", 1)[1])
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, directory)
    return generate_latest(registry)


class Observability:
    """Counts, times and logs each HTTP request. It sees the status and timing, never the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        IN_PROGRESS.inc()
        status = 500  # what the client gets if the app fails before it answers
        counted = False

        def count() -> None:
            nonlocal counted
            counted = True
            IN_PROGRESS.dec()
            REQUESTS.labels(endpoint_of(scope), scope["method"], str(status)).inc()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False) and not counted:
                # Counted, and no longer in progress, before its answer's last part goes: the client may ask
                # again, of another worker, before this one would have counted it after, and a scrape then saw
                # the request in progress and not among those answered (test_workers). Only the counts: the log
                # line and the latency wait until the answer is on its way, which then waits for nothing else.
                count()
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            if not counted:  # the app failed, or the client left, before the answer's last part
                count()
            seconds = time.perf_counter() - start
            endpoint = endpoint_of(scope)
            LATENCY.labels(endpoint).observe(seconds)
            access_log.info(
                json.dumps(
                    {
                        "ts": round(time.time(), 3),
                        "method": scope["method"],
                        "path": scope["path"],
                        "endpoint": endpoint,
                        "status": status,
                        "ms": round(seconds * 1000, 2),
                    }
                )
            )
