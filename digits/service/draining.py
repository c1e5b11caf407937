"""uvicorn's HTTP protocol, with one change to a worker's graceful shutdown (SIGTERM, and so a SIGHUP's reload).

uvicorn closes every idle connection as soon as its worker stops accepting. Among them are connections it has
just accepted whose request is already in the socket's buffer, not yet read: closed with unread data, the
client gets a reset. A SIGHUP under 4 clients' load lost a request that way in 2 of 4 runs. Here an idle
connection gets DRAIN_IDLE_S to start its request before it is closed; one that does is answered, then closed,
as any connection in flight is. serve.py runs every worker with it; it imports no more than uvicorn.
"""

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DRAIN_IDLE_S = 1.0  # a request already sent is read within a few event-loop turns; this is many


class DrainingProtocol(HttpToolsProtocol):
    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:  # idle: closed at once by uvicorn
            self.loop.call_later(DRAIN_IDLE_S, super().shutdown)
        else:
            super().shutdown()
