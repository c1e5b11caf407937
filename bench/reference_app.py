"""The yardstick for bench.py: a bare FastAPI app that reads the same upload as /predict and answers a fixed JSON.

    uvicorn bench.reference_app:app

It parses the multipart body with Starlette's own request.form(), the way a plain FastAPI upload
endpoint does, and does no decoding, preprocessing or inference.
"""

from typing import Any

from fastapi import FastAPI, Request
from starlette.datastructures import UploadFile

app = FastAPI()
ANSWER = {"digit": 7, "confidence": 0.99, "probabilities": [0.001] * 9 + [0.991], "uncertain": False}


@app.post("/predict")
async def predict(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        upload = (await request.form())["file"]
        assert isinstance(upload, UploadFile)
        assert await upload.read()
    else:
        assert await request.body()
    return ANSWER


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
