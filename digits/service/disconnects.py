"""Work done for a client only while it waits: work still queued when its client hangs up is dropped."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio.to_thread
from fastapi import HTTPException, Request

from digits.i18n.message import N_, Message

T = TypeVar("T")


async def unless_gone(request: Request, work: Awaitable[T]) -> T:
    """The result of work, which is cancelled if the client hangs up first: a request still waiting for a thread
    or for the model is dropped. (A thread already running can't be stopped; the bounds keep its work short.)"""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    # nginx's code for a request whose client closed the connection; nobody reads it.
    raise HTTPException(499, detail=Message(N_("the client closed the connection before the answer was ready")))


async def disconnected(request: Request) -> None:
    """Returns when the client has gone: once the body is read, the server's next message says so."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def in_thread(request: Request, work: Callable[[], T]) -> T:
    return await unless_gone(request, anyio.to_thread.run_sync(work))
