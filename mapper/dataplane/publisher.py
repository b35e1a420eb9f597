"""Readings to the edge node's MQTT broker, through a broker outage and back.

`submit` never blocks: messages wait in a bounded buffer while the broker is away (the oldest
are dropped, and counted, once it is full) and go out in order when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt

from fluidos_sensors.backoff import Backoff
from fluidos_sensors.broker import BrokerAccess
from mapper.dataplane.buffer import BoundedBuffer

log = logging.getLogger(__name__)

_BATCH = 200
"""Messages handed to the MQTT client at once."""
INFLIGHT_MAX = 1000
"""QoS 1 messages awaiting the broker's acknowledgement at once."""


def settle_disconnect(client: aiomqtt.Client) -> None:
    """Take note of an unexpected disconnect's error.

    aiomqtt keeps it in a future that nobody reads when the connection's context exits on
    our own error; asyncio would then log "Future exception was never retrieved".
    """
    future = getattr(client, "_disconnected", None)
    if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
        future.exception()


@dataclass
class PublisherStats:
    submitted: int = 0
    published: int = 0
    dropped: int = 0
    connects: int = 0
    connect_failures: int = 0
    publish_failures: int = 0
    connected: bool = False


class MqttPublisher:
    """Publishes (topic, payload) pairs to one broker; `run` owns the connection."""

    def __init__(
        self,
        access: BrokerAccess,
        *,
        capacity: int = 10_000,
        qos: int = 0,
        client_id: str | None = None,
        keepalive: int = 15,
        backoff: Callable[[], Backoff] = lambda: Backoff(0.2, 10.0),
    ) -> None:
        self.access = access
        self.qos = qos
        self.client_id = client_id
        self.keepalive = keepalive
        self._backoff = backoff
        self._buffer: BoundedBuffer[tuple[str, bytes]] = BoundedBuffer(capacity)
        self._stats = PublisherStats()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def stats(self) -> PublisherStats:
        self._stats.dropped = self._buffer.dropped
        return self._stats

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def submit(self, topic: str, payload: bytes) -> None:
        """Queue one message; never blocks, never raises for a full buffer."""
        self._stats.submitted += 1
        self._idle.clear()
        self._buffer.put((topic, payload))

    async def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far went out (True) or `timeout` passes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
                return True
        return False

    async def run(self) -> None:
        """Connect, publish, reconnect with capped exponential backoff, until cancelled."""
        backoff = self._backoff()
        outage_since: float | None = None
        while True:
            client = aiomqtt.Client(
                self.access.host,
                self.access.port,
                username=self.access.username,
                password=self.access.password,
                identifier=self.client_id,
                keepalive=self.keepalive,
                timeout=10,
                # QoS 1 waits for acknowledgements; paho's default window of 20 in flight
                # would cap readings at 20 per round trip to the broker.
                max_inflight_messages=INFLIGHT_MAX,
                tls_params=aiomqtt.TLSParameters(ca_certs=self.access.ca)
                if self.access.ca
                else None,
            )
            try:
                async with client:
                    # A batch in flight is expected, not worth aiomqtt's warning.
                    client.pending_calls_threshold = _BATCH + 1
                    self._stats.connected = True
                    self._stats.connects += 1
                    backoff.reset()
                    if outage_since is not None:
                        log.info(
                            "broker %s back after %.1f s; %d message(s) waiting, %d dropped",
                            self.access,
                            time.monotonic() - outage_since,
                            len(self._buffer),
                            self._buffer.dropped,
                        )
                        outage_since = None
                    else:
                        log.info("connected to broker %s", self.access)
                    await self._publish_forever(client)
            except aiomqtt.MqttError as exc:
                settle_disconnect(client)
                if self._stats.connected:
                    self._stats.publish_failures += 1
                else:
                    self._stats.connect_failures += 1
                self._stats.connected = False
                if outage_since is None:
                    outage_since = time.monotonic()
                    # aiomqtt's messages name the host and reason, never the password.
                    log.warning("broker %s unavailable: %s; buffering", self.access, exc)
                await asyncio.sleep(backoff.next())

    async def _publish_forever(self, client: aiomqtt.Client) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                self._idle.set()
                batch = [await self._buffer.get()]
            # Handed to the client together, the batch goes out in a few socket writes
            # instead of one event-loop round trip per message.
            results = await asyncio.gather(
                *(client.publish(topic, payload, qos=self.qos) for topic, payload in batch),
                return_exceptions=True,
            )
            failed = [item for item, result in zip(batch, results, strict=True) if result]
            self._stats.published += len(batch) - len(failed)
            if failed:
                for item in reversed(failed):
                    self._buffer.put_back(item)
                error = next(r for r in results if r)
                if isinstance(error, aiomqtt.MqttError):
                    raise error
                raise aiomqtt.MqttError(f"publish failed: {error!r}")

    def _take_batch(self) -> list[tuple[str, bytes]]:
        batch: list[tuple[str, bytes]] = []
        while len(batch) < _BATCH:
            item = self._buffer.get_nowait()
            if item is None:
                break
            batch.append(item)
        return batch
