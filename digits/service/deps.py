"""What routes need, as FastAPI dependencies: the lifespan makes each once per worker (main.py), and a test can
override any of them (app.dependency_overrides) instead of patching the environment."""

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from digits.feedback.ids import PredictionIds
from digits.feedback.store import FeedbackStore
from digits.inference.predictor import Predictor
from digits.service.config import Settings


def settings(request: Request) -> Settings:
    return request.app.state.settings


def predictor(request: Request) -> Predictor:
    return request.app.state.predictor


def prediction_ids(request: Request) -> PredictionIds:
    return request.app.state.ids


def store(request: Request) -> FeedbackStore:
    return request.app.state.feedback


SettingsDep = Annotated[Settings, Depends(settings)]
PredictorDep = Annotated[Predictor, Depends(predictor)]
IdsDep = Annotated[PredictionIds, Depends(prediction_ids)]
StoreDep = Annotated[FeedbackStore, Depends(store)]


def operator(request: Request, settings: SettingsDep) -> None:
    """With STATS_TOKEN set, only whoever holds it (the operators, their Prometheus) sees what the service counts."""
    given = request.headers.get("authorization", "")
    if settings.stats_token and not hmac.compare_digest(given.encode(), f"Bearer {settings.stats_token}".encode()):
        raise HTTPException(
            401, detail="this needs the operators' token: send it as Authorization: Bearer <STATS_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
