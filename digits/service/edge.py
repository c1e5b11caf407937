"""What every response carries and what small-bodied endpoints refuse, as plain ASGI middleware.

SecurityHeaders: the pages load scripts and styles from the service only, with no inline script, can't be
framed, and say nothing of where the user came from. The API docs (Swagger UI) start with one inline script
of FastAPI's, allowed by its hash alone.
BodyLimit: FastAPI reads a JSON body whole before validating it, so a 100 MB /feedback would be read into
memory; this answers 413 as soon as a limited path's body passes its limit, from Content-Length or while it
arrives.
"""

import base64
import hashlib
import json
import re

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from digits.i18n.languages import chosen
from digits.i18n.message import N_, Message

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI and ReDoc style themselves inline, and ReDoc searches in a worker made from a blob.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' {scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS = ("/docs", "/redoc")
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),  # frame-ancestors, for browsers that predate it
    (b"referrer-policy", b"no-referrer"),
]
PAGE_HEADERS = [*HEADERS, (b"content-security-policy", CSP.encode())]
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in DOCS:
            await self._docs(scope, receive, send)
            return

        async def send_with_headers(message: ASGIMessage) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *PAGE_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The docs page, held back until its body is known: its policy allows its own inline script by hash."""
        start: ASGIMessage = {}
        body = b""

        async def hold(message: ASGIMessage) -> None:
            nonlocal start, body
            if message["type"] == "http.response.start":
                start = message
                return
            body += message.get("body", b"")
            if message.get("more_body", False):
                return
            hashes = " ".join(
                f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
                for script in INLINE_SCRIPT.findall(body)
            )
            policy = DOCS_CSP.format(scripts=hashes).encode()
            start["headers"] = [*start.get("headers", []), *HEADERS, (b"content-security-policy", policy)]
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, hold)


class BodyLimit:
    """413 for a body over its path's limit; other paths pass untouched (uploads have their own, streamed cap)."""

    def __init__(self, app: ASGIApp, limits: dict[str, int]) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limits.get(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await _too_large(scope, send, limit)
            return
        # Small by definition: read it here, counting, and hand the app the same messages.
        messages: list[ASGIMessage] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > limit:
                await _too_large(scope, send, limit)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> ASGIMessage:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    over = Message(N_("the body is over %(limit)s bytes; send only the prediction_id and the label"), limit=limit)
    body = json.dumps({"detail": chosen(scope).say(over)})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            # The rest of the body is never read: the connection can't carry another request.
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})
