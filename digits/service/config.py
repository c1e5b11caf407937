"""The service's one config object: every setting and limit an operator can tune, read from the environment.

Each field is read from the variable of its own name in capitals (MAX_UPLOAD_BYTES), the weights' path from
WEIGHTS_PATH. docs/operations.md lists them all, and a test holds that list to this class.
"""

import os
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
    # The sandbox (sandbox.py): processes that decode every upload too costly for the cheap path, one per core.
    # (serve.py shares the cores out between its workers.)
    decode_processes: int = Field(default_factory=lambda: len(os.sched_getaffinity(0)), ge=1)
    # A decode past either is killed: the costliest file accepted otherwise, a 6324² GIF, takes 0.16 s of CPU, and
    # a phone photo 0.03 s; issue 33's bound on any upload is 0.5 s of CPU and 1 s of wall time, with room here for
    # the rest of the request.
    decode_cpu_s: float = Field(0.5, gt=0)
    decode_deadline_s: float = Field(0.8, gt=0)
    # What a sandbox process may map beyond what it holds when ready: the largest file accepted, a 3226² RGBA PNG,
    # decodes to 40 MB, and is reduced to 512 px before anything else is made of it.
    decode_memory_mb: int = Field(512, ge=16)
    decode_backlog: int = Field(4, ge=1)  # a client's uploads waiting for the sandbox; past it, 429
    # The time one /predict/batch may spend reading its files, as it is spent: past it, the rest are refused unread.
    batch_budget_ms: float = 500.0
    database_url: str = DEFAULT_DATABASE_URL
    feedback_ttl_s: int = 3600  # whole seconds: the signed time is in seconds
    feedback_per_hour: int = 60  # corrections one client address may make in an hour
    stats_token: str = ""  # when set, /metrics and /feedback/stats ask for it as a bearer token
    prediction_secret: SecretStr = SecretStr("")  # signs prediction ids; when unset, data/ holds one per machine
