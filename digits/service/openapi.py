"""What /docs says beyond the schemas: the image bodies, the errors each route may answer, and the 422's shape."""

from typing import Any

from fastapi import FastAPI

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


def openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the 422 that errors.invalid_request() sends: a sentence, as every error is."""
    schema = FastAPI.openapi(app)
    schema["components"]["schemas"]["HTTPValidationError"] = {
        "title": "HTTPValidationError",
        "type": "object",
        "properties": {"detail": {"title": "Detail", "type": "string"}},
        "required": ["detail"],
    }
    schema["components"]["schemas"].pop("ValidationError", None)
    return schema
