"""What the API takes and answers, as pydantic models: the OpenAPI schema at /docs is made from these."""

from typing import Annotated, Any

from pydantic import BaseModel, Field

# A 28x28 PNG of noise, the largest input image, makes an id of about 1,400 characters; a number's id
# carries all its digits' images, and a 32-digit number stays well under this.
MAX_ID_CHARS = 65536
LABEL = r"^[0-9]{1,64}$"  # a right number, as a string of digits
ID_CHARS = r"^[A-Za-z0-9_.-]+$"  # a prediction id is URL-safe base64 and dots (itsdangerous)

MODEL = "the weights that gave the answer: the first 12 characters of their sha256; /model gives the whole record"
EXPLANATION = (
    "with ?explain=true: why this digit, as a 28×28 RGB PNG, base64-encoded like input_image. The input's ink is "
    "grey; orange marks the ink that pushed the answer towards `digit`, blue the ink that pushed it away. When "
    "the answer is uncertain between two digits (uncertain, and not not_a_digit), it shows what sets `digit` "
    "apart from the second likeliest."
)


class PredictionOut(BaseModel):
    digit: int = Field(ge=0, le=9, description="the most likely digit")
    confidence: float = Field(ge=0, le=1, description="the probability of that digit")
    probabilities: list[float] = Field(min_length=10, max_length=10, description="probabilities of 0 to 9")
    uncertain: bool = Field(description="true when the model isn't confident: maybe not a single, clear digit")
    not_a_digit: bool = Field(
        description="true when the image doesn't look like a digit at all (uncertain is true too); false when "
        "the model is only unsure which digit it is"
    )
    prediction_id: str = Field(
        description="names this prediction in POST /feedback, for FEEDBACK_TTL_S seconds; "
        "signed, so any replica sharing PREDICTION_SECRET accepts it"
    )
    input_image: str = Field(description="the 28×28 image the model saw, as a base64-encoded PNG")
    hint: str | None = Field(
        None, description="what to do next: set when the image seems to hold several digits, or no digit at all"
    )
    explanation: str | None = Field(default=None, description=EXPLANATION)
    model: str = Field(description=MODEL)


class NumberDigitOut(BaseModel):
    digit: int = Field(ge=0, le=9)
    confidence: float = Field(ge=0, le=1)
    probabilities: list[float] = Field(min_length=10, max_length=10)
    uncertain: bool
    box: list[int] = Field(min_length=4, max_length=4, description="x, y, width, height in the upload's pixels")
    input_image: str = Field(description="the 28×28 image the model saw for this digit, as a base64-encoded PNG")
    explanation: str | None = Field(default=None, description=EXPLANATION)


class NumberOut(BaseModel):
    number: str = Field(description="the digits, left to right")
    prediction_id: str = Field(description="names this reading in POST /feedback, whose label is the right number")
    digits: list[NumberDigitOut]
    confidence: float = Field(ge=0, le=1, description="the probability that every digit is right")
    uncertain: bool = Field(description="true when a digit, or where the digits were told apart, is doubtful")
    model: str = Field(description=MODEL)


class BatchError(BaseModel):
    error: str = Field(description="why this file could not be read; the other files are unaffected")


class BatchOut(BaseModel):
    predictions: list[PredictionOut | BatchError]
    model: str = Field(description=MODEL)


class FeedbackIn(BaseModel):
    prediction_id: str = Field(
        max_length=MAX_ID_CHARS, pattern=ID_CHARS, description="from the prediction's answer, exactly as given"
    )
    label: Annotated[int, Field(ge=0, le=9)] | Annotated[str, Field(pattern=LABEL)] = Field(
        description="the right digit, or for a whole number the right number as a string of digits"
    )


class FeedbackOut(BaseModel):
    id: int
    prediction_id: str
    predicted: int | str
    label: int | str
    model: str = Field(description="the weights that made the prediction corrected, as its answer named them")


class FeedbackStats(BaseModel):
    total: int = Field(description="corrections of single digits")
    numbers: int = Field(description="corrections of whole numbers")
    by_label: dict[str, int] = Field(description="corrections per true digit")
    by_predicted: dict[str, int] = Field(description="corrections per digit the model had said")
    model: str = Field(description="the weights in service")


class Health(BaseModel):
    status: str
    model: str = Field(description="the weights in service: during a rollout, which replica serves which")


class ModelInfo(BaseModel):
    architecture: str
    parameters: int
    test_accuracy: float | None
    sha256: str
    model: str = Field(description="the short id that answers carry: the first 12 characters of sha256")
    metadata: dict[str, Any] = Field(description="what train.py recorded with the weights: its figures and recipe")
