import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi.testclient import TestClient

from digits.service.batcher import MicroBatcher
from main import app

HELD = threading.Event()  # set while a run_held() function holds its first batch


def run_held(calls: list[list[int]], release: threading.Event):
    """A run function that records each batch and holds the first one until release is set."""
    HELD.clear()

    def run(items: list[int]) -> list[int | Exception]:
        calls.append(items)
        if len(calls) == 1:
            HELD.set()
            release.wait(5)
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]

    return run


async def first_batch_held() -> None:
    assert await asyncio.to_thread(HELD.wait, 5), "the first batch never started"


async def submit_while_first_runs(batcher: MicroBatcher, release: threading.Event, items: list[int]) -> list:
    first = asyncio.create_task(batcher.submit(0))
    await first_batch_held()
    rest = [asyncio.create_task(batcher.submit(i)) for i in items]
    await asyncio.sleep(0)
    release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_a_lone_upload_runs_at_once():
    calls: list[list[int]] = []
    batcher = MicroBatcher(run_held(calls, threading.Event()), max_batch=32)

    async def lone() -> int:
        # The held first batch would never finish if anything waited for company.
        calls.append([])
        return await asyncio.wait_for(batcher.submit(7), timeout=1)

    assert asyncio.run(lone()) == 70
    assert calls == [[], [7]]


def test_uploads_that_arrive_while_a_batch_runs_share_the_next():
    calls: list[list[int]] = []
    release = threading.Event()
    batcher = MicroBatcher(run_held(calls, release), max_batch=32)
    results = asyncio.run(submit_while_first_runs(batcher, release, list(range(1, 10))))
    assert results == [i * 10 for i in range(10)]
    assert calls == [[0], list(range(1, 10))]


def test_batches_are_capped_at_max_batch():
    calls: list[list[int]] = []
    release = threading.Event()
    batcher = MicroBatcher(run_held(calls, release), max_batch=4)
    results = asyncio.run(submit_while_first_runs(batcher, release, list(range(1, 10))))
    assert results == [i * 10 for i in range(10)]
    assert [len(c) for c in calls] == [1, 4, 4, 1]


def test_a_bad_item_fails_alone():
    calls: list[list[int]] = []
    release = threading.Event()
    batcher = MicroBatcher(run_held(calls, release), max_batch=32)
    results = asyncio.run(submit_while_first_runs(batcher, release, [1, -2, 3]))
    assert results[:2] == [0, 10]
    assert isinstance(results[2], ValueError)
    assert str(results[2]) == "bad -2"
    assert results[3] == 30
    assert calls[1] == [1, -2, 3]


def test_a_failing_batch_fails_each_caller_and_the_next_batch_still_runs():
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int | Exception]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("the model broke")
        return list(items)

    async def two() -> list:
        batcher = MicroBatcher(run, max_batch=32)
        failed = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        return [*failed, await batcher.submit(3)]

    failed_one, failed_two, third = asyncio.run(two())
    assert isinstance(failed_one, RuntimeError)
    assert isinstance(failed_two, RuntimeError)
    assert third == 3


def test_a_caller_that_went_away_is_left_out_of_the_batch():
    calls: list[list[int]] = []
    release = threading.Event()
    batcher = MicroBatcher(run_held(calls, release), max_batch=32)

    async def scenario() -> list:
        first = asyncio.create_task(batcher.submit(0))
        await first_batch_held()
        gone = asyncio.create_task(batcher.submit(1))
        kept = asyncio.create_task(batcher.submit(2))
        await asyncio.sleep(0)
        gone.cancel()
        release.set()
        return list(await asyncio.gather(first, kept))

    assert asyncio.run(scenario()) == [0, 20]
    assert calls == [[0], [2]]


def test_the_service_batches_uploads_that_arrive_while_the_model_is_busy(seven_png, monkeypatch):
    """The service's own micro-batcher: uploads that arrive while a forward pass runs share the next one."""
    with TestClient(app) as client:
        state = app.state.worker
        batches: list[int] = []
        release, queued = threading.Event(), threading.Semaphore(0)
        finish, submit = state.predictor.finish, state.batcher.submit

        def held(prepared):
            batches.append(len(prepared))
            if len(batches) == 1:
                release.wait(10)
            return finish(prepared)

        async def counted(item):
            queued.release()
            return await submit(item)

        monkeypatch.setattr(state.predictor, "finish", held)
        monkeypatch.setattr(state.batcher, "submit", counted)

        def send() -> int:
            return client.post("/predict", content=seven_png, headers={"Content-Type": "image/png"}).status_code

        with ThreadPoolExecutor(6) as pool:
            first = pool.submit(send)
            assert queued.acquire(timeout=10)  # the first upload is in, and its pass is held
            rest = [pool.submit(send) for _ in range(5)]
            for _ in rest:
                assert queued.acquire(timeout=10)  # each of the rest is waiting for the model
            release.set()
            assert [f.result() for f in (first, *rest)] == [200] * 6
    assert batches == [1, 5]


def test_a_batch_never_waits_behind_the_default_threadpool():
    """The service gives its batcher a thread of its own: endpoints filling AnyIO's threadpool can't hold it back."""

    async def scenario() -> int:
        pool = anyio.to_thread.current_default_thread_limiter()
        pool.total_tokens = 1
        release = threading.Event()
        busy = asyncio.create_task(anyio.to_thread.run_sync(release.wait))
        while pool.borrowed_tokens < 1:  # the one thread of the pool is taken
            await asyncio.sleep(0)
        batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: list(items), 8, CapacityLimiter(1))
        try:
            return await asyncio.wait_for(batcher.submit(3), 5)
        finally:
            release.set()
            await busy

    assert asyncio.run(scenario()) == 3


def test_callers_that_went_away_hold_back_no_one():
    """A batch whose callers all left is skipped, and one who leaves while its batch runs gets nothing: everyone
    after them is still answered."""
    calls: list[list[int]] = []
    release = threading.Event()

    async def gone_before(leaving: int) -> list:
        batcher = MicroBatcher(run_held(calls, release), max_batch=1)
        first = asyncio.create_task(batcher.submit(0))
        await first_batch_held()
        rest = {i: asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3)}
        await asyncio.sleep(0)
        rest[leaving].cancel()  # its batch of one is now empty
        release.set()
        return await asyncio.wait_for(asyncio.gather(first, *(t for i, t in rest.items() if i != leaving)), 5)

    async def gone_during(leaving: int) -> list:
        def run(items: list[int]) -> list[int | Exception]:
            HELD.set()
            release.wait(5)
            return [i * 10 for i in items]

        HELD.clear()
        batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=8)
        tasks = {i: asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3)}  # one batch
        await first_batch_held()
        tasks[leaving].cancel()
        release.set()
        return await asyncio.wait_for(asyncio.gather(*(t for i, t in tasks.items() if i != leaving)), 5)

    assert asyncio.run(gone_before(2)) == [0, 10, 30]
    release.clear()
    assert asyncio.run(gone_during(2)) == [10, 30]
