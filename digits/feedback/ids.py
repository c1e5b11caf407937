"""Signed prediction ids, which any worker or replica can read back, and the secret they are signed with.

A prediction's id is not a key into any process's memory: it is the prediction itself, signed. It
carries what a correction stores, so the process that takes the correction needs only the shared secret
and the database, never the process that made the prediction. What is stored is only the 28x28 image the
model saw (PNG), the predicted digit, its confidence, the corrected label, the model's sha256, the time,
and a keyed hash of the client's address that bounds how many corrections one client makes an hour: never
the original upload, nor the address.
"""

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import secrets
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from digits.paths import DATA

DEFAULT_SECRET_FILE = DATA / "prediction_secret"
MIN_SECRET_BYTES = 16


@dataclass(frozen=True)
class Seen:
    """A prediction as its id carries it: what a correction of it stores."""

    key: str  # unique per prediction, so that a second correction replaces the first
    image_png: bytes  # the 28x28 input; for a number, its digits' inputs side by side, 28 high
    predicted: int | str  # a digit, or a whole number's digits
    confidence: float
    model_sha256: str

    @property
    def number(self) -> bool:
        return isinstance(self.predicted, str)


class BadPredictionId(ValueError):
    """The id was changed, cut short, or signed with another secret."""


class ExpiredPredictionId(ValueError):
    """The id is genuine but older than the time allowed for corrections, ttl_s."""

    def __init__(self, ttl_s: int) -> None:
        super().__init__(ttl_s)
        self.ttl_s = ttl_s


def client_key(secret: bytes, address: str) -> str:
    """A keyed hash of a client's address, the same on every replica: enough to count one client's corrections,
    not to recover the address. An IPv6 client is its /64, which one household or host usually has whole."""
    try:
        ip = ipaddress.ip_address(address)
        address = str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)
    except ValueError:
        pass  # not an address (a test client's name): counted as it is
    return hmac.new(secret, b"digits.client:" + address.encode(), hashlib.sha256).hexdigest()[:32]


def load_secret(given: str = "", path: Path = DEFAULT_SECRET_FILE) -> bytes:
    """The secret given (PREDICTION_SECRET), or else this machine's own secret in data/, created once for every
    worker to share.

    The file is written whole under a temporary name and linked into place, which fails if it exists:
    workers starting together all end up reading the one secret that won, never a half-written one.
    """
    if secret := given:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"PREDICTION_SECRET is shorter than {MIN_SECRET_BYTES} bytes; "
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return secret.encode()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # mode 0600
        try:
            os.write(fd, secrets.token_urlsafe(32).encode())
            os.fsync(fd)
            os.close(fd)
            os.link(tmp, path)
        except FileExistsError:
            pass  # another worker got there first: use its secret
        finally:
            os.unlink(tmp)
    stored = path.read_bytes().strip()
    if len(stored) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{path} holds {len(stored)} bytes, fewer than {MIN_SECRET_BYTES}: anyone could guess it and forge "
            "prediction ids; delete it and a new one is made at the next start, or set PREDICTION_SECRET"
        )
    return stored


class PredictionIds:
    """Issues and reads back signed prediction ids (itsdangerous: HMAC-SHA256 over the payload and the time).

    The payload is signed, not encrypted: it holds nothing the client wasn't already shown (its own
    28x28 input, the digit, the confidence and the public model sha256), and without the secret it can't
    be changed or forged.
    """

    def __init__(self, secret: bytes, ttl_s: int) -> None:
        self.ttl_s = ttl_s
        self._serializer = URLSafeTimedSerializer(
            secret, salt="digits.prediction", signer_kwargs={"digest_method": hashlib.sha256}
        )

    def issue(self, image_png: bytes, predicted: int | str, confidence: float, model_sha256: str) -> str:
        return self._serializer.dumps(
            {
                "k": uuid.uuid4().hex,
                "i": base64.b64encode(image_png).decode("ascii"),
                "d": predicted,
                "c": confidence,
                "m": model_sha256,
            }
        )

    def read(self, prediction_id: str) -> Seen:
        try:
            p = self._serializer.loads(prediction_id, max_age=self.ttl_s)
            return Seen(p["k"], base64.b64decode(p["i"], validate=True), p["d"], p["c"], p["m"])
        except SignatureExpired as e:
            raise ExpiredPredictionId(self.ttl_s) from e
        # A genuine signature over a payload of another shape: an id from an incompatible version of this service.
        except (BadSignature, KeyError, TypeError, binascii.Error) as e:
            raise BadPredictionId(prediction_id) from e
