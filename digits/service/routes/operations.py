"""What operators and their tools read: health, metrics, and the model in service."""

import json
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from digits.service.observability import render_metrics
from digits.service.schemas import Health, ModelInfo
from digits.service.worker import WorkerDep, operator

router = APIRouter()


# Async, so that health checks and scrapes answer at once even while the inference thread is busy.
@router.get("/healthz")
async def healthz(worker: WorkerDep) -> Health:
    return Health(status="ok", model=worker.predictor.model_id)


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(operator)])
async def metrics() -> Response:
    return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)


@router.get("/model")
def model_info(worker: WorkerDep) -> ModelInfo:
    predictor = worker.predictor
    meta = predictor.metadata
    return ModelInfo(
        architecture=meta.get("architecture", "MLP 784-256-128-10"),
        parameters=sum(a.size for a in predictor.state.values()),
        test_accuracy=float(meta["test_accuracy"]) if "test_accuracy" in meta else None,
        sha256=predictor.sha256,
        model=predictor.model_id,
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
