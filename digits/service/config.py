"""The service's one config object: every setting and limit an operator can tune, read from the environment.

Each field is read from the variable of its own name in capitals (MAX_UPLOAD_BYTES), the weights' path from
WEIGHTS_PATH. docs/operations.md lists them all, and a test holds that list to this class.
"""

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from digits.feedback.store import DEFAULT_DATABASE_URL
from digits.imaging.decode import DEFAULT_MAX_PIXELS
from digits.inference.segment import MAX_DIGITS
from digits.inference.weights import DEFAULT_WEIGHTS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, populate_by_name=True)

    weights: Path = Field(DEFAULT_WEIGHTS, validation_alias=AliasChoices("WEIGHTS_PATH", "weights"))
    max_upload_bytes: int = 10 * 1024 * 1024
    max_receiving_bytes: int = 64 * 1024 * 1024  # of all the uploads a worker is receiving at once
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_batch_files: int = 256
    max_number_digits: int = MAX_DIGITS
    # Uploads to /predict that share one pass of the model at most: under load a batch's first upload waits
    # for the others' decoding, so this bounds the time that batching adds to it (about 0.2 ms an upload).
    micro_batch: int = 32
    request_timeout_s: float = 30.0
    torch_threads: int = 1
    threadpool_size: int = 1
    # Threads that decode /predict uploads too costly for the model's thread, beside it and AnyIO's threadpool:
    # two, so that one slow decode leaves another upload a thread (Pillow's decoders let go of the GIL).
    decode_threads: int = 2
    # The estimated decoding time one /predict/batch may use (formats.decode_ms): past it, files are refused unread.
    batch_budget_ms: float = 500.0
    database_url: str = DEFAULT_DATABASE_URL
    feedback_ttl_s: int = 3600  # whole seconds: the signed time is in seconds
    feedback_per_hour: int = 60  # corrections one client address may make in an hour
    stats_token: str = ""  # when set, /metrics and /feedback/stats ask for it as a bearer token
    prediction_secret: SecretStr = SecretStr("")  # signs prediction ids; when unset, data/ holds one per machine
