"""The caps on a request's body, chunk by chunk, at the ASGI level: the test client hands the app its whole body
as one message, so these send the messages themselves."""

import asyncio
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request

from digits.service.config import Settings
from digits.service.edge import BodyLimit
from digits.service.uploads import read_body
from digits.service.worker import Receiving
from main import app


def messages_of(*chunks: bytes, then: str | None = None) -> Callable[[], Any]:
    """An ASGI receive() that gives the chunks in order, then hangs ("wait") or says the client left ("gone")."""
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1 or then is not None} for i, c in
             enumerate(chunks)]  # fmt: skip

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if then == "gone":
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()  # a client that sends nothing more
        raise AssertionError("unreachable")

    return receive


def body_of(receive: Callable[[], Any], length: int | None = None, **settings: Any) -> bytes | HTTPException:
    """read_body() on a request to /predict, as the service with these settings would read it."""
    headers = [(b"content-type", b"image/png")] + ([(b"content-length", str(length).encode())] if length else [])
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers, "app": app}
    try:
        return asyncio.run(asyncio.wait_for(read_body(Request(scope, receive), Settings(**settings), Receiving()), 5))
    except HTTPException as e:
        return e


def test_the_upload_cap_counts_every_chunk():
    assert body_of(messages_of(*[b"x" * 10] * 10), max_upload_bytes=100) == b"x" * 100
    too_large = body_of(messages_of(*[b"x" * 10] * 11), max_upload_bytes=100)
    assert isinstance(too_large, HTTPException)
    assert too_large.status_code == 413


def test_a_declared_length_over_the_cap_is_refused_unread():
    nothing: list[str] = []

    async def receive() -> dict[str, Any]:
        nothing.append("read")
        return {"type": "http.request", "body": b"x", "more_body": False}

    refused = body_of(receive, length=101, max_upload_bytes=100)
    assert isinstance(refused, HTTPException)
    assert refused.status_code == 413
    assert nothing == []
    assert body_of(messages_of(b"x" * 100), length=100, max_upload_bytes=100) == b"x" * 100  # exactly the cap


def test_an_upload_that_stalls_is_408_and_one_cut_off_is_400():
    stalled = body_of(messages_of(b"x", then="wait"), request_timeout_s=0.2)
    assert isinstance(stalled, HTTPException)
    assert (stalled.status_code, "took over 0.2 s" in str(stalled.detail)) == (408, True)
    gone = body_of(messages_of(b"x", then="gone"))
    assert isinstance(gone, HTTPException)
    assert (gone.status_code, "cut off" in str(gone.detail)) == (400, True)


def body_limit(receive: Callable[[], Any], length: int | None = None) -> tuple[int, int]:
    """The status /feedback answers behind BodyLimit (100 bytes), and the bytes the app behind it received."""
    seen = [0]

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen[0] += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    status = [0]

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    headers = [(b"content-length", str(length).encode())] if length else []
    scope = {"type": "http", "method": "POST", "path": "/feedback", "headers": headers}
    asyncio.run(BodyLimit(inner, {"/feedback": 100})(scope, receive, send))
    return status[0], seen[0]


def test_the_correction_limit_counts_every_chunk():
    assert body_limit(messages_of(*[b"x" * 10] * 10)) == (201, 100)
    assert body_limit(messages_of(*[b"x" * 10] * 11)) == (413, 0)
    assert body_limit(messages_of(b"x" * 100), length=100) == (201, 100)  # exactly the limit
    assert body_limit(messages_of(b"x"), length=101) == (413, 0)  # refused by its declared length
