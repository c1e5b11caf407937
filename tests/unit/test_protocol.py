"""The workers' HTTP protocol: an answer leaves whole, in one send, so that a worker killed while answering
leaves nginx either the whole answer or none, to send the request on to another replica."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from digits.service.protocol import WorkerProtocol

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


class Connection(asyncio.Transport):
    """The socket as the protocol sees it: what it sends, one entry a send."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.sent.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name in ("sockname", "peername") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def serve(app: App, request: bytes, body: bytes = b"") -> Connection:
    """One request through a WorkerProtocol, its body (if any) sent after the protocol has had a turn with the
    head: what went out on the connection."""

    async def scenario() -> Connection:
        config = Config(app, access_log=False, lifespan="off")
        config.load()
        protocol = WorkerProtocol(config=config, server_state=ServerState(), app_state={})
        connection = Connection()
        protocol.connection_made(connection)
        protocol.data_received(request)
        for _ in range(5):
            await asyncio.sleep(0)
        if body:
            protocol.data_received(body)
        await asyncio.wait_for(asyncio.gather(*protocol.tasks), 5)
        protocol.connection_lost(None)
        return connection

    return asyncio.run(scenario())


async def answer_json(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"11")]})
    await send({"type": "http.response.body", "body": b'{"id": 42}\n'})


GET = b"GET /x HTTP/1.1\r\nHost: example\r\n\r\n"


def test_an_answer_leaves_in_one_send():
    sent = serve(answer_json, GET).sent
    assert len(sent) == 1
    assert sent[0].startswith(b"HTTP/1.1 201 Created\r\n")
    assert sent[0].endswith(b'\r\n\r\n{"id": 42}\n')


def test_a_streamed_answer_sends_its_head_with_the_first_piece():
    async def stream(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"one", b"two"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    sent = serve(stream, GET).sent
    assert sent[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert sent[0].endswith(b"chunked\r\n\r\n3\r\none\r\n")
    assert sent[1:] == [b"3\r\ntwo\r\n", b"0\r\n\r\n"]


def test_a_client_waiting_to_send_its_body_is_told_to_go_on_at_once():
    request = b"POST /x HTTP/1.1\r\nHost: example\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    sent = serve(answer_json, request, body=b"seven").sent
    assert sent[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(sent) == 2
    assert sent[1].endswith(b'{"id": 42}\n')


def test_an_answer_that_fails_after_its_head_sends_nothing():
    async def fails(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        raise RuntimeError("the worker fails between the head and the body")

    connection = serve(fails, GET)
    assert connection.sent == []
    assert connection.closed
