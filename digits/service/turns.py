"""Fair turns at the sandbox (sandbox.py) between clients: one client's costly files can't hold everyone's.

At most `slots` jobs run at once, and at most one of any client's: when a slot frees, the client whose last turn
is oldest goes next, one that has had none (or was idle since) first, so a phone photo sent while four clients
loop on a costly file waits for one of their jobs at most, not for every file queued before it. A client keeps at
most `backlog` jobs waiting; past that it is told to wait for its answers (429). A job whose client hangs up leaves
the queue.
"""

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Backlogged(Exception):
    """A client with `backlog` jobs already waiting for the sandbox."""

    def __init__(self, backlog: int) -> None:
        super().__init__(backlog)
        self.backlog = backlog


class FairTurns:
    """Round-robin turns between clients, one job each at a time, within a fixed number of slots. One event loop
    per worker, so no lock."""

    def __init__(self, slots: int, backlog: int) -> None:
        self.slots = slots
        self.backlog = backlog
        self.running: set[str] = set()
        self.waiting: dict[str, deque[asyncio.Future[None]]] = {}  # in the order the clients came
        # When each busy client's last turn began, by a count of turns; forgotten once the client is idle.
        self.turns = 0
        self.last_turn: dict[str, int] = {}

    @asynccontextmanager
    async def turn(self, client: str) -> AsyncIterator[None]:
        """Waits for the client's turn, and holds its slot until the block ends."""
        queue = self.waiting.setdefault(client, deque())
        if len(queue) >= self.backlog:
            raise Backlogged(self.backlog)
        ticket = asyncio.get_running_loop().create_future()
        queue.append(ticket)
        self._next()
        try:
            await ticket
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled():
                self._release(client)  # its turn came as it left
            else:
                self._forget(client, ticket)
            raise
        try:
            yield
        finally:
            self._release(client)

    def _next(self) -> None:
        """Gives free slots to the waiting clients that have none running, the oldest last turn first."""
        while len(self.running) < self.slots:
            ready = [c for c in self.waiting if c not in self.running]
            if not ready:
                return
            client = min(ready, key=lambda c: self.last_turn.get(c, -1))  # the first that came, of equals
            queue = self.waiting[client]
            ticket = queue.popleft()
            if not queue:
                del self.waiting[client]
            self.turns += 1
            self.last_turn[client] = self.turns
            self.running.add(client)
            ticket.set_result(None)

    def _release(self, client: str) -> None:
        self.running.discard(client)
        if client not in self.waiting:
            del self.last_turn[client]  # idle: its next job starts afresh
        self._next()

    def _forget(self, client: str, ticket: asyncio.Future[None]) -> None:
        queue = self.waiting.get(client)
        if queue is not None and ticket in queue:
            queue.remove(ticket)
            if not queue:
                del self.waiting[client]
                if client not in self.running:
                    self.last_turn.pop(client, None)
