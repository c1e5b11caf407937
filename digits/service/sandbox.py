"""Untrusted files decoded apart from the service, under a hard deadline, as browsers decode images in sandboxed
processes and ImageMagick's policy limits each image's time and memory.

Every upload too costly for the cheap path (answers.CHEAP_MS) is decoded and preprocessed in a pool of processes
(pebble's ProcessPool). Each process holds its own Predictor and may grow by `decode_memory_mb` of address space
(RLIMIT_AS). A job is killed with its process, which the pool replaces, past `decode_cpu_s` of CPU (the kernel's
profiling timer, whose signal ends the process wherever it is, in C or not) or `decode_deadline_s` of wall time
(the pool's timeout, for a machine too busy to give it that CPU). Only the 28×28 inputs, or a number's reading,
come back.

The estimate and the structure walk (digits/imaging/formats.py) still refuse most costly files for free, before
they get here; the deadline is the guarantee, for the costs no estimate foresees. A 350 KB progressive JPEG of
7000×5000 and 5,000 scans is estimated at 175 ms to decode, and took 13.6 s of CPU in process; here, 0.5 s.
The limits are per job, so that a slow machine (3× slower on some days here) costs time, not answers: the
costliest file accepted, a 6324² GIF, takes 0.16 s of CPU.
"""

import asyncio
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from pebble import ProcessExpired, ProcessPool

from digits.i18n.message import N_
from digits.imaging.errors import ImageTooLarge
from digits.inference.forward import limit_threads
from digits.inference.predictor import Predictor, Prepared
from digits.inference.segment import Reading, read_number
from digits.service.config import Settings
from digits.service.turns import FairTurns

T = TypeVar("T")
MB = 1024 * 1024

_predictor: Predictor | None = None  # each pool process's own


def _start(weights: Path, max_pixels: int, memory_bytes: int) -> None:
    """A pool process, made ready: its Predictor, one thread, and its limits."""
    # pebble's handler for SIGTERM runs only between Python's bytecodes, which a decoder in C never reaches:
    # the pool waited 3 s to kill a job past its deadline. Without it, the kernel ends the process at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    limit_threads(1)
    global _predictor
    _predictor = Predictor(weights, max_pixels)
    # Above what the process maps once ready: torch alone maps 3.4 GB it never touches.
    grown = os.sysconf("SC_PAGE_SIZE") * int(Path("/proc/self/statm").read_text().split()[0]) + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (grown, grown))


@contextmanager
def _cpu_limit(seconds: float) -> Iterator[Predictor]:
    """The process's Predictor, for a job that SIGPROF ends past `seconds` of CPU: its default action ends the
    process, which RLIMIT_CPU's whole seconds over the process's life could not do per job."""
    assert _predictor is not None, "the pool's initializer makes it"
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield _predictor
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def _prepare(data: bytes, cpu_s: float) -> Prepared:
    with _cpu_limit(cpu_s) as predictor:
        return predictor.prepare(data)


def _read(data: bytes, max_digits: int, cpu_s: float) -> Reading:
    with _cpu_limit(cpu_s) as predictor:
        return read_number(predictor, data, max_digits)


def _ready() -> None:
    """Nothing: run once on each process as the pool starts, so that none is made on a request."""


class Sandbox:
    """The pool, and the fair turns (turns.py) that clients take at it."""

    def __init__(self, settings: Settings) -> None:
        # Forked from a server that has imported the model's code once: a process is ready in 0.1 s, not 3.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        self.cpu_s, self.deadline_s = settings.decode_cpu_s, settings.decode_deadline_s
        self.pool = ProcessPool(
            settings.decode_processes,
            initializer=_start,
            initargs=(settings.weights, settings.max_image_pixels, settings.decode_memory_mb * MB),
            context=context,
        )
        self.turns = FairTurns(settings.decode_processes, settings.decode_backlog)
        for _ in range(settings.decode_processes):
            self.pool.schedule(_ready)

    async def prepare(self, client: str, data: bytes) -> Prepared:
        """An upload's 28×28 input, and whether it holds several digits, or its ImageError."""
        return await self._run(client, _prepare, (data, self.cpu_s))

    async def read(self, client: str, data: bytes, max_digits: int) -> Reading:
        """A whole number's digits, or the ImageError that says why not."""
        return await self._run(client, _read, (data, max_digits, self.cpu_s))

    async def _run(self, client: str, job: Callable[..., T], args: tuple[object, ...]) -> T:
        async with self.turns.turn(client):
            future = self.pool.schedule(job, args, timeout=self.deadline_s)
            try:
                return await asyncio.wrap_future(future)
            except (TimeoutError, ProcessExpired, MemoryError) as e:
                memory = isinstance(e, MemoryError) or (isinstance(e, ProcessExpired) and e.exitcode != -signal.SIGPROF)
                raise _too_costly(memory, self.cpu_s) from e
            finally:
                future.cancel()  # a client that has gone: its job is killed with its process

    def close(self) -> None:
        self.pool.stop()
        self.pool.join()


def _too_costly(memory: bool, cpu_s: float) -> ImageTooLarge:
    if memory:
        return ImageTooLarge(
            N_("reading the image needed more memory than any photo or scan does; send a smaller PNG or JPEG")
        )
    slow = N_(
        "reading the image took longer than any photo or scan does (over %(seconds)s s of work); "
        "send a smaller PNG or JPEG"
    )
    return ImageTooLarge(slow, seconds=cpu_s)
