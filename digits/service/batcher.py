"""Micro-batching for /predict: uploads that arrive while the model is busy share its next pass.

A request never waits for company. When the inference thread is idle, an upload starts a batch of
one at once, so a lone request is served as fast as without batching. Uploads that arrive while a
batch runs wait for it to finish, then all go together: one hand-off to the thread, one forward
pass, instead of one each. Under load the batches grow by themselves; at low load they stay at one.
"""

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    """Runs run(items) in AnyIO's threadpool, for items submitted concurrently from the event loop.

    run returns one result per item, in order; a result that is an exception is raised to that item's
    caller alone. max_batch bounds how long the first item of a batch waits for the last.
    """

    def __init__(
        self, run: Callable[[list[In]], list[Out | Exception]], max_batch: int, limiter: CapacityLimiter | None = None
    ) -> None:
        self.run = run
        self.max_batch = max_batch
        # A thread of its own, so that batches never queue behind other work in AnyIO's default threadpool.
        self.limiter = limiter
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
                # A caller that went away (a client disconnecting) needs no answer.
                batch = [(item, future) for item, future in batch if not future.done()]
                if not batch:
                    continue
                try:
                    results = await anyio.to_thread.run_sync(
                        self.run, [item for item, _ in batch], limiter=self.limiter
                    )
                except Exception as e:  # a failure of the whole batch reaches every caller in it
                    results = [e] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining = None
