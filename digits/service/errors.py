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
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from digits.feedback.ids import BadPredictionId, ExpiredPredictionId
from digits.feedback.store import TooManyCorrections
from digits.i18n.languages import Language, chosen
from digits.i18n.message import N_, Message
from digits.imaging.errors import ImageError, ImageTooLarge, NoDigitFound, TooManyMarks
from digits.inference.segment import TooManyDigits
from digits.service.turns import Backlogged

# 400 for an unreadable file, 413 for absurd dimensions or cost, 422 when there is no digit to read.
IMAGE_STATUS = {NoDigitFound: 422, TooManyDigits: 422, TooManyMarks: 422, ImageTooLarge: 413}
# What a field must be, said whole where pydantic's messages would name one member of its union at a time.
EXPECTED = {
    "label": N_(
        'the right digit, 0 to 9, or for a whole number the right number as a string of digits, such as "2026"'
    ),
    "prediction_id": N_("the one the prediction answered with, exactly as it was given"),
}
SEE_DOCS = N_("see /docs for what to send")
FAMILIES = (ImageError, ExpiredPredictionId, BadPredictionId, TooManyCorrections, Backlogged, DBAPIError)


def as_http(e: Exception, request: Request) -> HTTPException:
    """The HTTP answer for an error of one of the FAMILIES (an HTTPException as it is); its detail is a Message,
    which the handler or the page says in the reader's language."""
    if isinstance(e, HTTPException):
        return e
    if isinstance(e, ImageError):
        status = next((code for kind, code in IMAGE_STATUS.items() if isinstance(e, kind)), 400)
        return HTTPException(status, detail=e.message)
    if isinstance(e, ExpiredPredictionId):
        expired = (
            N_(
                "this prediction has expired: corrections are taken for %(minutes)s min after the prediction "
                "(FEEDBACK_TTL_S); predict again, then send the right digit or number"
            )
            if e.ttl_s >= 60
            else N_(
                "this prediction has expired: corrections are taken for %(seconds)s s after the prediction "
                "(FEEDBACK_TTL_S); predict again, then send the right digit or number"
            )
        )
        return HTTPException(404, detail=Message(expired, minutes=e.ttl_s / 60, seconds=e.ttl_s))
    if isinstance(e, BadPredictionId):
        forged = N_(
            "this prediction_id was not issued by this service, or was changed or cut short; "
            "send it exactly as the prediction returned it"
        )
        return HTTPException(400, detail=Message(forged))
    if isinstance(e, TooManyCorrections):
        most = N_(
            "this address has sent %(count)s corrections in the last hour, the most one client may; try again later"
        )
        return HTTPException(429, detail=Message(most, count=e.per_hour), headers={"Retry-After": "3600"})
    if isinstance(e, Backlogged):
        waiting = N_(
            "%(count)s of this client's images are already waiting to be read, the most one client may; "
            "send this one once they are answered"
        )
        return HTTPException(429, detail=Message(waiting, count=e.backlog), headers={"Retry-After": "1"})
    if isinstance(e, DBAPIError):
        # Only the corrections live in the database: a POST stores one, a GET reads them.
        down = (
            N_("the correction can't be stored right now; try again in a minute")
            if request.method == "POST"
            else N_("the corrections can't be read right now; try again in a minute")
        )
        return HTTPException(503, detail=Message(down))
    raise TypeError(f"{type(e).__name__} is not an error family the service answers") from e


def said(detail: Any, reader: Language) -> Any:
    """A detail as the reader reads it: a Message in their language; Starlette's own details as they are."""
    return reader.say(detail) if isinstance(detail, Message) else detail


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    answer = HTTPException(exc.status_code, detail=said(exc.detail, chosen(request.scope)), headers=exc.headers)
    return await http_exception_handler(request, answer)


async def family(request: Request, exc: Exception) -> Response:
    return await http_error(request, as_http(exc, request))


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """A sentence, as every other error is: where and what, never the input itself, which may be megabytes."""
    assert isinstance(exc, RequestValidationError)
    language = chosen(request.scope)
    errors = exc.errors()
    if errors and errors[0]["type"] == "json_invalid":
        why = errors[0].get("ctx", {}).get("error", "")
        invalid = Message(N_("the body is not valid JSON (%(why)s); %(next)s"), why=why, next=Message(SEE_DOCS))
        return JSONResponse({"detail": language.say(invalid)}, 400)
    problems: dict[str, Message] = {}  # one per field: pydantic reports a union's members apart
    for e in errors:
        field = str(e["loc"][1]) if len(e["loc"]) > 1 else ""
        named: str | Message = field or Message(N_("the body"))
        if e["type"] == "missing":
            problems.setdefault(field, Message(N_("%(field)s is missing"), field=named))
        elif field in EXPECTED:
            problems.setdefault(
                field, Message(N_("%(field)s must be %(what)s"), field=named, what=Message(EXPECTED[field]))
            )
        else:  # pydantic's own words, which are English only
            problems.setdefault(field, Message(N_("%(field)s: %(why)s"), field=named, why=e["msg"]))
    detail = "; ".join(language.say(m) for m in problems.values())[:500]
    return JSONResponse({"detail": f"{detail}; {language.say(Message(SEE_DOCS))}"}, 422)


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
    wrong = Message(N_("%(method)s is not allowed here; use %(allowed)s"), method=request.method, allowed=allowed)
    return JSONResponse(
        {"detail": chosen(request.scope).say(wrong)}, status_code=405, headers={"Allow": ", ".join(allowed)}
    )


def routes(among: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, with those of the included routers (FastAPI keeps each router whole, without prefixes here)."""
    for route in among:
        router = getattr(route, "original_router", None)
        yield from routes(router.routes) if router is not None else [route]


def install(app: FastAPI) -> None:
    """One handler per error family."""
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        StarletteHTTPException: http_error,
        RequestValidationError: invalid_request,
        405: method_not_allowed,
        **dict.fromkeys(FAMILIES, family),
    }
    for key, handler in handlers.items():
        app.add_exception_handler(key, handler)
