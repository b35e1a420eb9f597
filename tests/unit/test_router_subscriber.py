"""The agent's subscriber acknowledges a reading only once stored, on the connection it came
by: the acknowledgement logic, driven through gmqtt's callbacks without a broker."""

import asyncio

import pytest

from mapper.broker import BrokerAccess
from router_manager.agent.subscriber import (
    Inbound,
    StaleAcknowledgement,
    Subscriber,
    _ignore_stale,
)


def subscriber(batches: list[list[Inbound]]) -> Subscriber:
    return Subscriber(BrokerAccess("127.0.0.1", 1883, "u", "p"), "agent-test", batches.append)


async def arrive(sub: Subscriber, topic: str) -> asyncio.Task[int]:
    task = asyncio.ensure_future(sub._on_message(None, topic, b"{}", 1, {}))
    await asyncio.sleep(0)  # gmqtt runs the handler as a task: it queues the message
    return task


async def test_acknowledged_only_after_the_batch_is_stored() -> None:
    batches: list[list[Inbound]] = []
    sub = subscriber(batches)
    first, second = await arrive(sub, "a"), await arrive(sub, "b")
    await asyncio.sleep(0.01)
    assert not first.done() and not second.done() and batches == []
    sub._hand_over()
    assert [m.topic for m in batches[0]] == ["a", "b"]
    assert await first == 0 and await second == 0
    third = await arrive(sub, "c")  # a new batch, a new wait
    await asyncio.sleep(0.01)
    assert not third.done()
    sub._hand_over()
    assert await third == 0 and sub.received == 3


async def test_a_reading_whose_connection_was_lost_is_not_acknowledged_on_the_next() -> None:
    sub = subscriber([])
    old = await arrive(sub, "a")
    sub._on_disconnect(None, None)
    sub._on_connect(None, 0, 0, {})
    new = await arrive(sub, "b")
    sub._hand_over()  # both stored
    with pytest.raises(StaleAcknowledgement):
        await old
    assert await new == 0


async def test_a_failed_store_acknowledges_nothing() -> None:
    def refuse(batch: list[Inbound]) -> None:
        raise OSError("disk full")

    sub = Subscriber(BrokerAccess("127.0.0.1", 1883, "u", "p"), "agent-test", refuse)
    task = await arrive(sub, "a")
    with pytest.raises(OSError):
        sub._hand_over()
    await asyncio.sleep(0.01)
    assert not task.done()
    task.cancel()


def test_only_stale_acknowledgements_are_kept_out_of_the_error_log() -> None:
    seen: list[dict] = []
    loop = asyncio.new_event_loop()
    try:
        _ignore_stale(
            lambda _loop, context: seen.append(context),
            loop,
            {"exception": StaleAcknowledgement("a")},
        )
        other = {"message": "boom", "exception": ValueError("boom")}
        _ignore_stale(lambda _loop, context: seen.append(context), loop, other)
    finally:
        loop.close()
    assert seen == [other]
