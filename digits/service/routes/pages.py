"""The pages: the upload page, its result pages, the correction form's answer, and the switch of language. They
are in the reader's language (digits/i18n), and show an error as a sentence on the page, with the same status the
API would answer."""

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from digits.i18n.languages import CODES, COOKIE, Language, Reader, language
from digits.i18n.message import N_, Message
from digits.inference.explain import runner_up
from digits.paths import TEMPLATES
from digits.service.disconnects import in_thread
from digits.service.errors import FAMILIES, as_http, said
from digits.service.observability import endpoint_of
from digits.service.openapi import IMAGE_BODY, PAGE_ERRORS
from digits.service.routes.corrections import Client, checked_label, stored
from digits.service.schemas import LABEL, MAX_ID_CHARS
from digits.service.uploads import Upload, image_upload
from digits.service.worker import WorkerDep

router = APIRouter()
COOKIE_S = 365 * 24 * 3600  # the switch's choice is kept for a year
CHOICE_BYTES = 1024  # the switch's form is a dozen bytes; BodyLimit refuses more before it is read


def sentence(detail: str) -> str:
    """An error's detail as the page shows it: a sentence, capitalized, with a full stop."""
    return detail[:1].upper() + detail[1:] + ("" if detail.endswith((".", "?", "!")) else ".")


def templates_in(reader: Language) -> Jinja2Templates:
    """The templates with Jinja2's i18n extension speaking one language, its numbers written its way."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(reader.translations, newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(sentence=sentence, percent=reader.percent)
    env.globals.update(language=reader, languages=[language(code) for code in CODES])
    return Jinja2Templates(env=env)


TEMPLATES_IN = {code: templates_in(language(code)) for code in CODES}


def page(
    request: Request, reader: Language, name: str, context: dict[str, object] | None = None, status_code: int = 200
) -> HTMLResponse:
    response = TEMPLATES_IN[reader.code].TemplateResponse(request, name, context or {}, status_code=status_code)
    response.headers["Content-Language"] = reader.code
    response.headers["Vary"] = "Accept-Language, Cookie"  # the same URL is another page in another language
    return response


def error_page(request: Request, reader: Language, e: Exception) -> HTMLResponse:
    """The upload form again, saying why."""
    error = as_http(e, request)
    return page(request, reader, "upload.html", {"error": said(error.detail, reader)}, error.status_code)


@router.get("/", include_in_schema=False)
def index() -> RedirectResponse:
    return RedirectResponse("/upload")


@router.get("/upload", response_class=HTMLResponse)
def upload_page(request: Request, reader: Reader) -> HTMLResponse:
    return page(request, reader, "upload.html")


@router.post("/language", include_in_schema=False)
def switch_language(lang: Annotated[str, Form(max_length=16)]) -> RedirectResponse:
    """The page's switch: the choice kept in a cookie, which outranks the browser's Accept-Language."""
    if lang not in CODES:
        choose = N_("choose a language the service speaks: %(languages)s")
        raise HTTPException(422, detail=Message(choose, languages=list(CODES)))
    response = RedirectResponse("/upload", status_code=303)
    response.set_cookie(COOKIE, lang, max_age=COOKIE_S, httponly=True, samesite="lax")
    return response


async def optional_upload(request: Request, worker: WorkerDep) -> Upload | HTTPException:
    # The page shows the error itself, so it takes the failure as a value instead of a JSON answer.
    try:
        return await image_upload(request, worker)
    except HTTPException as e:
        return e


@router.post("/upload", response_class=HTMLResponse, responses=PAGE_ERRORS, openapi_extra={"requestBody": IMAGE_BODY})
async def upload_result(
    request: Request,
    upload: Annotated[Upload | HTTPException, Depends(optional_upload)],
    worker: WorkerDep,
    reader: Reader,
) -> HTMLResponse:
    """The result page for the plain HTML form; a bad upload gets the form back with the reason."""
    if isinstance(upload, HTTPException):
        return error_page(request, reader, upload)
    endpoint = endpoint_of(request.scope)
    try:
        if upload.number:
            reading = await worker.reading(request, upload.data)
            number = await in_thread(request, partial(worker.answers.number, reading, endpoint, True))
            return page(request, reader, "number.html", {"number": number, "filename": upload.filename})
        prepared = await worker.prepared(request, upload.data)
        prediction = await in_thread(request, partial(worker.answers.digit, prepared, endpoint, True))
    except FAMILIES as e:
        return error_page(request, reader, e)
    context = {"prediction": prediction, "runner_up": runner_up(prediction.probabilities), "filename": upload.filename}
    return page(request, reader, "result.html", context)


@router.post("/upload/feedback", response_class=HTMLResponse, status_code=201, include_in_schema=False)
def feedback_form(
    request: Request,
    prediction_id: Annotated[str, Form(max_length=MAX_ID_CHARS)],
    label: Annotated[str, Form(pattern=LABEL)],
    worker: WorkerDep,
    who: Client,
    reader: Reader,
) -> HTMLResponse:
    """The correction from the result page's plain form. The model's own answer sent back changes nothing."""
    try:
        seen = worker.ids.read(prediction_id)  # an id of other characters is no genuine one either
        right = checked_label(seen, label)
        if right == seen.predicted:
            return page(request, reader, "thanks.html", {"saved": None, "label": label})
        saved = stored(worker, who, seen, right, prediction_id)
    except (HTTPException, *FAMILIES) as e:
        return error_page(request, reader, e)
    return page(request, reader, "thanks.html", {"saved": saved}, status_code=201)
