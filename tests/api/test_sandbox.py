"""The sandbox (digits/service/sandbox.py): a file whose decoding no estimate foresees is refused in time on every
route, its process killed and replaced; a process past its memory is refused too; clients take fair turns; and a
batch reads its cheap files in process, a run at a time, around those the sandbox reads."""

import asyncio
import time

import anyio.to_thread
import httpx2 as httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from digits.imaging.png import encode
from digits.training.report import phone_photo
from main import app
from tests.helpers import bench_module

hostile = bench_module("hostile_files")
WALL_BOUND_S = 1.0


@pytest.fixture(scope="module")
def scans() -> bytes:
    """350 KB that promise 175 ms of decoding and cost 13.6 s of CPU in process."""
    return hostile._progressive_scans(7000, 5000, 5000)


@pytest.fixture(scope="module")
def photo(mnist_test) -> bytes:
    return phone_photo(mnist_test[0][0])  # a 4000×3000 JPEG of a 7


@pytest.fixture(scope="module")
def client():
    with TestClient(app) as c:
        yield c


def timed(send) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    r = send()
    return r, time.perf_counter() - start


def form(data: bytes, mode: str = "digit") -> dict:
    return {"files": {"file": ("a.jpg", data, "image/jpeg")}, "data": {"mode": mode}}


# Each route, and how its answer names the 7 of the phone photo.
ROUTES = {
    "/predict": (lambda c, data: c.post("/predict", content=data), lambda r: r.json()["digit"] == 7),
    "explained": (lambda c, data: c.post("/predict?explain=true", **form(data)), lambda r: r.json()["digit"] == 7),
    "/predict/number": (lambda c, data: c.post("/predict/number", content=data), lambda r: r.json()["number"] == "7"),
    "the page": (lambda c, data: c.post("/upload", **form(data)), lambda r: 'data-testid="result-digit">7<' in r.text),
    "the page's numbers": (
        lambda c, data: c.post("/upload", **form(data, "number")),
        lambda r: 'data-testid="result-number">7<' in r.text,
    ),
}


@pytest.mark.timed
@pytest.mark.parametrize("route", ROUTES)
def test_a_file_no_estimate_sees_is_refused_in_time_on_every_route(client, scans, photo, route):
    send, reads_the_seven = ROUTES[route]
    r, seconds = timed(lambda: send(client, scans))
    assert r.status_code == 413
    assert seconds < WALL_BOUND_S
    assert "send a smaller PNG or JPEG" in r.text
    # Its process was killed and replaced: the next costly upload is read as ever.
    r = send(client, photo)
    assert r.status_code == 200
    assert reads_the_seven(r)


@pytest.mark.timed
def test_a_batch_refuses_it_in_its_place(client, scans, photo, seven_png):
    uploads = (seven_png, photo, scans, seven_png)
    files = [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(uploads)]
    r, seconds = timed(lambda: client.post("/predict/batch", files=files))
    assert seconds < 2 * WALL_BOUND_S
    seven, read, refused, unread = r.json()["predictions"]
    assert (seven["digit"], read["digit"]) == (7, 7)
    assert refused["error"].startswith("reading the image took longer than any photo or scan does")
    assert unread["error"].startswith("not read: the images before it")  # the budget went on the one before


def test_a_process_past_its_memory_is_refused_and_replaced(monkeypatch, photo):
    monkeypatch.setenv("DECODE_MEMORY_MB", "16")
    page = encode(np.asarray(hostile.with_digit("L", 6324)), "PNG")  # 40 MB of pixels, read with 512 MB
    with TestClient(app) as c:
        r = c.post("/predict", content=page, headers={"Content-Type": "image/png"})
        assert r.status_code == 413
        assert "more memory" in r.json()["detail"]
        assert c.post("/predict", content=photo, headers={"Content-Type": "image/jpeg"}).json()["digit"] == 7
    monkeypatch.delenv("DECODE_MEMORY_MB")
    with TestClient(app) as c:
        assert c.post("/predict", content=page, headers={"Content-Type": "image/png"}).status_code == 200


@pytest.mark.timed
def test_clients_take_turns_at_the_sandbox(monkeypatch, scans, photo):
    """One process, an attacker with five costly files at once and a client with a phone photo: the photo waits
    for the job in progress at most, not for the attacker's queue; and the attacker's sixth gets 429. Told by the
    order the answers come in, not by a clock, which a slow or traced run stretches (mutmut's took 2.07 s)."""
    monkeypatch.setenv("DECODE_PROCESSES", "1")

    async def scenario() -> tuple[list[int], int, float]:
        async with app.router.lifespan_context(app):
            attacker = httpx.AsyncClient(
                transport=httpx.ASGITransport(app, client=("192.0.2.1", 1)), base_url="http://a"
            )
            other = httpx.AsyncClient(transport=httpx.ASGITransport(app, client=("192.0.2.2", 1)), base_url="http://b")
            start = time.perf_counter()
            attacks = [asyncio.create_task(attacker.post("/predict", content=scans)) for _ in range(6)]
            await asyncio.sleep(0.2)  # all six sent, the first being read
            answer = await other.post("/predict", content=photo)
            refused_before = sum(a.done() and a.result().status_code == 413 for a in attacks)
            assert answer.json()["digit"] == 7
            statuses = [r.status_code for r in await asyncio.gather(*attacks)]
            return statuses, refused_before, time.perf_counter() - start

    statuses, refused_before, attack_s = asyncio.run(scenario())
    assert sorted(statuses) == [413] * 5 + [429]  # one running and four waiting, DECODE_BACKLOG
    assert refused_before <= 1  # after the one job in progress, not after the four queued behind it
    assert attack_s > 2.0  # the attacker's five, killed one after another at half a second of CPU each


def test_a_batch_reads_its_cheap_files_a_run_at_a_time(photo, seven_png, monkeypatch):
    """One hand-off to a thread for each run of cheap files, not one for each file: with one each, batches of 256
    28×28 PNGs were read at half the images a second."""
    handed: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(work, *args, **kwargs):
        handed.append(getattr(work, "func", work).__name__)
        return await run_sync(work, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    # The hand-offs are counted here, not the time: mutmut's traced run spent 664 ms on this batch, past the
    # 500 ms budget, and the photo went unread (CI, 2026-12-04). The budget's own test is the one above.
    monkeypatch.setenv("BATCH_BUDGET_MS", "60000")
    uploads = [seven_png] * 20 + [photo] + [seven_png] * 20
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(uploads)]
    with TestClient(app) as client:  # its own: the turns' test above ran the app's lifespan, and closed its pool
        answers = client.post("/predict/batch", files=files).json()["predictions"]
    assert [a["digit"] for a in answers] == [7] * 41
    assert handed == ["_cheap_run", "_cheap_run", "batch"]  # before the photo, after it, and the answers
