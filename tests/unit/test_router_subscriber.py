"""The agent's subscriber acknowledges a reading only once stored, on the connection it came
by: PUBLISH packets go through gmqtt's own packet handler (no broker); what would be written
to the socket is recorded."""

import struct
from typing import Any

import pytest
from gmqtt.mqtt.constants import MQTTv311

from fluidos_sensors.broker import BrokerAccess
from router_manager.agent.subscriber import Inbound, Subscriber, pubacks


class Connection:
    """The socket side of a gmqtt connection: what is written to it."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def send_package(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def acknowledged(self) -> list[int]:
        data = b"".join(self.written)
        assert len(data) % 4 == 0
        packets = [struct.unpack("!BBH", data[i : i + 4]) for i in range(0, len(data), 4)]
        assert all(kind == 0x40 and length == 2 for kind, length, _ in packets)
        return [mid for _, _, mid in packets]


def publish(client, topic: str, mid: int | None, payload: bytes = b"{}") -> None:
    """A PUBLISH packet as it comes off the wire (QoS 1 with a packet id, else QoS 0)."""
    name = topic.encode()
    raw = struct.pack("!H", len(name)) + name
    if mid is not None:
        raw += struct.pack("!H", mid)
    client._package_handler._handle_packet(0x32 if mid is not None else 0x30, raw + payload)


def subscriber(on_batch) -> tuple[Subscriber, Any, Connection]:
    sub = Subscriber(BrokerAccess("127.0.0.1", 1883, "u", "p"), "agent-test", on_batch)
    client = sub._client()
    client._connection_state.protocol_version = MQTTv311
    connection = Connection()
    client._package_handler.set_connection(connection)
    return sub, client, connection


def test_pubacks_are_mqtt_311_packets() -> None:
    assert pubacks([1, 0x1234]) == bytes([0x40, 2, 0, 1, 0x40, 2, 0x12, 0x34])


async def test_acknowledged_only_after_the_batch_is_stored_in_one_write() -> None:
    batches: list[list[Inbound]] = []
    sub, client, connection = subscriber(batches.append)
    publish(client, "a", 7, b'{"n":1}')
    publish(client, "b", 8, b'{"n":2}')
    publish(client, "c", None)  # QoS 0: stored, nothing to acknowledge
    assert connection.written == [] and batches == []
    sub._hand_over(client)
    assert [(m.topic, m.payload) for m in batches[0]] == [
        ("a", b'{"n":1}'),
        ("b", b'{"n":2}'),
        ("c", b"{}"),
    ]
    assert connection.written == [pubacks([7, 8])]
    publish(client, "a", 9)  # a new batch, a new wait
    assert connection.acknowledged() == [7, 8]
    sub._hand_over(client)
    assert connection.acknowledged() == [7, 8, 9] and sub.received == 4


async def test_a_reading_whose_connection_was_lost_is_not_acknowledged_on_the_next() -> None:
    batches: list[list[Inbound]] = []
    sub, client, old = subscriber(batches.append)
    publish(client, "a", 1)
    new = Connection()  # gmqtt reconnected; the broker may give packet id 1 to another reading
    client._package_handler.set_connection(new)
    publish(client, "b", 1)
    sub._hand_over(client)  # both stored
    assert [m.topic for m in batches[0]] == ["a", "b"]
    assert old.written == [] and new.acknowledged() == [1]


async def test_nothing_is_written_to_a_closing_connection() -> None:
    sub, client, connection = subscriber(lambda batch: None)
    publish(client, "a", 3)
    connection.closing = True
    sub._hand_over(client)
    assert connection.written == []


async def test_a_failed_store_acknowledges_nothing() -> None:
    def refuse(batch: list[Inbound]) -> None:
        raise OSError("disk full")

    sub, client, connection = subscriber(refuse)
    publish(client, "a", 5)
    with pytest.raises(OSError):
        sub._hand_over(client)
    assert connection.written == []
