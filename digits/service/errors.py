"""Every error family mapped to its HTTP answer, in one place: a sentence that says what to do, never the input.

The API's routes let these errors rise and the handlers answer JSON; the pages catch them and show the same
sentence on the page (as_http).
"""

from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.routing import BaseRoute, Match

from digits.feedback.ids import BadPredictionId, ExpiredPredictionId
from digits.feedback.store import TooManyCorrections
from digits.imaging.errors import ImageError, ImageTooLarge, NoDigitFound, TooManyMarks
from digits.inference.segment import TooManyDigits

# 400 for an unreadable file, 413 for absurd dimensions or cost, 422 when there is no digit to read.
IMAGE_STATUS = {NoDigitFound: 422, TooManyDigits: 422, TooManyMarks: 422, ImageTooLarge: 413}
# What a field must be, said whole where pydantic's messages would name one member of its union at a time.
EXPECTED = {
    "label": 'the right digit, 0 to 9, or for a whole number the right number as a string of digits, such as "2026"'
}
FAMILIES = (ImageError, ExpiredPredictionId, BadPredictionId, TooManyCorrections, DBAPIError)


def as_http(e: Exception, request: Request) -> HTTPException:
    """The HTTP answer for an error of one of the FAMILIES (an HTTPException as it is)."""
    if isinstance(e, HTTPException):
        return e
    if isinstance(e, ImageError):
        return HTTPException(IMAGE_STATUS.get(type(e), 400), detail=str(e))
    if isinstance(e, ExpiredPredictionId):
        window = f"{e.ttl_s / 60:g} minutes" if e.ttl_s >= 60 else f"{e.ttl_s:g} s"
        return HTTPException(
            404,
            detail=f"this prediction has expired: corrections are taken for {window} after "
            "the prediction (FEEDBACK_TTL_S); predict again, then send the right digit or number",
        )
    if isinstance(e, BadPredictionId):
        return HTTPException(
            400,
            detail="this prediction_id was not issued by this service, or was changed or cut "
            "short; send it exactly as the prediction returned it",
        )
    if isinstance(e, TooManyCorrections):
        return HTTPException(
            429,
            detail=f"this address has sent {e.per_hour} corrections in the last hour, the most one client may; "
            "try again later",
            headers={"Retry-After": "3600"},
        )
    if isinstance(e, DBAPIError):
        # Only the corrections live in the database: a POST stores one, a GET reads them.
        done = "the correction can't be stored" if request.method == "POST" else "the corrections can't be read"
        return HTTPException(503, detail=f"{done} right now; try again in a minute")
    raise TypeError(f"{type(e).__name__} is not an error family the service answers") from e


async def family(request: Request, exc: Exception) -> Response:
    return await http_exception_handler(request, as_http(exc, request))


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """A sentence, as every other error is: where and what, never the input itself, which may be megabytes."""
    assert isinstance(exc, RequestValidationError)
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


async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's Allow names only the first route on the path; /upload has a GET and a POST route.
    allowed = sorted(
        {
            method
            for route in routes(request.app.routes)
            if route.matches(request.scope)[0] != Match.NONE
            for method in getattr(route, "methods", ())
        }
    )
    return JSONResponse(
        {"detail": f"{request.method} is not allowed here; use {' or '.join(allowed)}"},
        status_code=405,
        headers={"Allow": ", ".join(allowed)},
    )


def routes(among: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, with those of the included routers (FastAPI keeps each router whole, without prefixes here)."""
    for route in among:
        router = getattr(route, "original_router", None)
        yield from routes(router.routes) if router is not None else [route]


def install(app: FastAPI) -> None:
    """One handler per error family."""
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        RequestValidationError: invalid_request,
        405: method_not_allowed,
        **dict.fromkeys(FAMILIES, family),
    }
    for key, handler in handlers.items():
        app.add_exception_handler(key, handler)
