"""Fair turns at the sandbox: slots, one job per client at a time, the longest-waiting client next, a backlog per
client, and a client that hangs up leaving no slot taken."""

import asyncio

import pytest

from digits.service.turns import Backlogged, FairTurns


async def job(turns: FairTurns, client: str, order: list[str], gate: asyncio.Event) -> None:
    async with turns.turn(client):
        order.append(client)
        await gate.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_clients_take_turns_one_job_each_at_a_time():
    async def scenario() -> list[str]:
        turns, order, gate = FairTurns(slots=1, backlog=8), list[str](), asyncio.Event()
        # The attacker's four jobs arrive first; a second client's one and a third's after.
        tasks = [asyncio.create_task(job(turns, "attacker", order, gate)) for _ in range(4)]
        await settle()
        tasks += [asyncio.create_task(job(turns, c, order, gate)) for c in ("photo", "scan")]
        await settle()
        for _ in range(6):  # one job finishes at a time
            gate.set()
            await settle()
            gate.clear()
        await asyncio.gather(*tasks)
        return order

    # Not the attacker four times first: each waiting client goes before the attacker's next job.
    assert asyncio.run(scenario()) == ["attacker", "photo", "scan", "attacker", "attacker", "attacker"]


def test_slots_bound_the_jobs_and_a_client_never_holds_two():
    async def scenario() -> tuple[set[str], int]:
        turns, order, gate = FairTurns(slots=2, backlog=8), list[str](), asyncio.Event()
        tasks = [asyncio.create_task(job(turns, c, order, gate)) for c in ("a", "a", "a", "b", "c")]
        await settle()
        running = set(turns.running)
        gate.set()
        await asyncio.gather(*tasks)
        return running, len(order)

    running, done = asyncio.run(scenario())
    assert running == {"a", "b"}  # two slots, and a's second job waits though a slot would be free for it
    assert done == 5


def test_a_client_past_its_backlog_is_told_to_wait():
    async def scenario() -> None:
        turns, order, gate = FairTurns(slots=1, backlog=2), list[str](), asyncio.Event()
        tasks = [asyncio.create_task(job(turns, "a", order, gate)) for _ in range(3)]  # one runs, two wait
        await settle()
        with pytest.raises(Backlogged):
            async with turns.turn("a"):
                pass
        async with asyncio.timeout(1):  # another client is not refused: it waits its turn
            other = asyncio.create_task(job(turns, "b", order, gate))
            await settle()
            gate.set()
            await asyncio.gather(*tasks, other)
        assert order == ["a", "b", "a", "a"]

    asyncio.run(scenario())


def test_a_client_that_hangs_up_leaves_no_slot_taken():
    async def scenario() -> list[str]:
        turns, order, gate = FairTurns(slots=1, backlog=8), list[str](), asyncio.Event()
        first = asyncio.create_task(job(turns, "a", order, gate))
        waiting = asyncio.create_task(job(turns, "b", order, gate))
        await settle()
        waiting.cancel()  # gone while it waited
        await settle()
        running = asyncio.create_task(job(turns, "c", order, gate))
        await settle()
        first.cancel()  # gone while it ran: its slot goes to c
        await settle()
        assert turns.running == {"c"}
        gate.set()
        await running
        assert not turns.running
        assert not turns.waiting
        assert not turns.last_turn  # nothing kept of clients that have gone
        return order

    assert asyncio.run(scenario()) == ["a", "c"]
