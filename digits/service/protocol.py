"""uvicorn's HTTP protocol, as every worker serves it (serve.py), with two changes for a worker that stops.

A worker retiring gracefully (SIGTERM, and so a SIGHUP's reload): uvicorn closes every idle connection as soon
as it stops accepting. Among them are connections it has just accepted whose request is already in the socket's
buffer, not yet read: closed with unread data, the client gets a reset. A SIGHUP under 4 clients' load lost a
request that way in 2 of 4 runs. Here an idle connection gets DRAIN_IDLE_S to start its request before it is
closed; one that does is answered, then closed, as any connection in flight is.

A worker killed outright (SIGKILL, the OOM killer): uvicorn writes an answer's head and its body in two sends,
and a replica killed between them left nginx with a head and no body. nginx can't send a request on to another
replica once it has passed a head to the client, so the client's answer was cut: in one CI run of
tests/system/test_container.py's kill under 4 clients' load, a correction stored and its answer cut. Here the
head waits for the body's first piece and leaves with it, in one send: the kernel sends what a dead process had
sent, so an answer is then whole, or never begun and sent on by nginx to another replica.
"""

import asyncio
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

DRAIN_IDLE_S = 1.0  # a request already sent is read within a few event-loop turns; this is many


class WorkerProtocol(HttpToolsProtocol):
    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:  # idle: closed at once by uvicorn
            self.loop.call_later(DRAIN_IDLE_S, super().shutdown)
        else:
            super().shutdown()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.transport is self.transport:  # a new cycle, not an upgrade
            self.cycle.transport = _HeadWithBody(self.transport, self.cycle)


class _HeadWithBody(asyncio.Transport):
    """A request's cycle's view of its connection: the answer's head is held until the first write of its body
    (uvicorn writes one for every body message, empty or not) and joined to it. "100 Continue", written before the
    answer starts, goes at once."""

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        super().__init__()
        # The cycle by a weak reference: it holds this, and a cycle of references for each request waited for the
        # garbage collector, whose passes cost one worker 1-2% of its requests a second and 11% on its p99 (wrk, 5
        # rounds alternated with the commit before; 1.00× and 1.01× with the weak reference).
        self._transport, self._cycle = transport, weakref.ref(cycle)
        self._head: bytes | None = None
        self._held = False

    def write(self, data: Any) -> None:
        cycle = self._cycle()
        if cycle is not None and cycle.response_started and not self._held:  # marked started, then its head written
            self._head, self._held = bytes(data), True
            return
        if self._head is not None:
            data, self._head = self._head + bytes(data), None
        self._transport.write(data)

    def close(self) -> None:
        self._transport.close()  # a head still held has no body: nothing of it is sent, and nginx tries elsewhere

    def is_closing(self) -> bool:
        return self._transport.is_closing()
