"""The pages: the upload page, its result pages, and the correction form's answer. They show an error as a sentence
on the page, with the same status the API would answer."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from digits.inference.explain import runner_up
from digits.paths import TEMPLATES
from digits.service.errors import FAMILIES, as_http
from digits.service.observability import endpoint_of
from digits.service.openapi import IMAGE_BODY, PAGE_ERRORS
from digits.service.routes.corrections import Client, checked_label, stored
from digits.service.schemas import LABEL, MAX_ID_CHARS
from digits.service.uploads import Upload, image_upload
from digits.service.worker import WorkerDep

router = APIRouter()
templates = Jinja2Templates(directory=TEMPLATES)


def sentence(detail: str) -> str:
    """An error's detail as the page shows it: a sentence, capitalized, with a full stop."""
    return detail[:1].upper() + detail[1:] + ("" if detail.endswith((".", "?", "!")) else ".")


templates.env.filters["sentence"] = sentence


def error_page(request: Request, e: Exception) -> HTMLResponse:
    """The upload form again, saying why."""
    error = as_http(e, request)
    return templates.TemplateResponse(request, "upload.html", {"error": error.detail}, status_code=error.status_code)


@router.get("/", include_in_schema=False)
def index() -> RedirectResponse:
    return RedirectResponse("/upload")


@router.get("/upload", response_class=HTMLResponse)
def upload_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "upload.html")


async def optional_upload(request: Request, worker: WorkerDep) -> Upload | HTTPException:
    # The page shows the error itself, so it takes the failure as a value instead of a JSON answer.
    try:
        return await image_upload(request, worker)
    except HTTPException as e:
        return e


@router.post("/upload", response_class=HTMLResponse, responses=PAGE_ERRORS, openapi_extra={"requestBody": IMAGE_BODY})
def upload_result(
    request: Request,
    upload: Annotated[Upload | HTTPException, Depends(optional_upload)],
    worker: WorkerDep,
) -> HTMLResponse:
    """The result page for the plain HTML form; a bad upload gets the form back with the reason."""
    if isinstance(upload, HTTPException):
        return error_page(request, upload)
    try:
        if upload.number:
            number = worker.answers.number(
                upload.data, worker.settings.max_number_digits, endpoint_of(request.scope), explained=True
            )
            return templates.TemplateResponse(request, "number.html", {"number": number, "filename": upload.filename})
        prediction = worker.answers.digit(upload.data, endpoint_of(request.scope), explained=True)
    except FAMILIES as e:
        return error_page(request, e)
    context = {"prediction": prediction, "runner_up": runner_up(prediction.probabilities), "filename": upload.filename}
    return templates.TemplateResponse(request, "result.html", context)


@router.post("/upload/feedback", response_class=HTMLResponse, status_code=201, include_in_schema=False)
def feedback_form(
    request: Request,
    prediction_id: Annotated[str, Form(max_length=MAX_ID_CHARS)],
    label: Annotated[str, Form(pattern=LABEL)],
    worker: WorkerDep,
    who: Client,
) -> HTMLResponse:
    """The correction from the result page's plain form. The model's own answer sent back changes nothing."""
    try:
        seen = worker.ids.read(prediction_id)  # an id of other characters is no genuine one either
        right = checked_label(seen, label)
        if right == seen.predicted:
            return templates.TemplateResponse(request, "thanks.html", {"saved": None, "label": label}, status_code=200)
        saved = stored(worker, who, seen, right, prediction_id)
    except (HTTPException, *FAMILIES) as e:
        return error_page(request, e)
    return templates.TemplateResponse(request, "thanks.html", {"saved": saved}, status_code=201)
