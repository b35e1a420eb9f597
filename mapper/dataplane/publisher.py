"""Readings to the edge node's MQTT broker, through a broker outage and back.

`submit` never blocks: messages wait in a bounded buffer while the broker is away (the oldest
are dropped, and counted, once it is full) and go out in order when it is back.

gmqtt, the asyncio-native client the edge agent reads with: a publish is built and written to
the connection's transport in the call, with no task, future or lock per message. With the
paho-based aiomqtt, publishing cost half of the mapper's CPU (`bench/bench_mapper.py`: a task,
a timeout, a pending-call scan and paho's per-message lock for every reading).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import gmqtt
from gmqtt.mqtt.constants import MQTTv311

from fluidos_sensors.backoff import Backoff
from fluidos_sensors.broker import BrokerAccess
from mapper.dataplane.buffer import BoundedBuffer

log = logging.getLogger(__name__)

_BATCH = 200
"""Messages written before the event loop gets a turn."""
CONNECT_TIMEOUT_SECONDS = 10.0
# gmqtt reconnects by itself after a lost connection (QoS 1 messages not yet acknowledged are
# sent again on the same client); past this, a fresh client is made.
RECONNECT_GRACE_SECONDS = 30.0


@dataclass
class PublisherStats:
    submitted: int = 0
    published: int = 0
    dropped: int = 0
    connects: int = 0
    connect_failures: int = 0
    connections_lost: int = 0
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
        self._wakeup = asyncio.Event()  # a message, a connect or a loss

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
        self._wakeup.set()

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
            client = self._client()
            try:
                await asyncio.wait_for(
                    client.connect(
                        self.access.host,
                        self.access.port,
                        ssl=self._tls(),
                        keepalive=self.keepalive,
                        version=MQTTv311,  # no per-packet properties to build
                    ),
                    CONNECT_TIMEOUT_SECONDS,
                )
            except (OSError, TimeoutError, gmqtt.MQTTConnectError) as exc:
                await _close(client)
                self._stats.connect_failures += 1
                if outage_since is None:
                    outage_since = time.monotonic()
                    # gmqtt's errors name the host and reason, never the password.
                    log.warning("broker %s unavailable: %s; buffering", self.access, exc)
                await asyncio.sleep(backoff.next())
                continue
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
            try:
                await self._publish_while_connected(client)
            finally:
                self._stats.connected = False
                await _close(client)
            self._stats.connections_lost += 1
            outage_since = time.monotonic()

    def _tls(self) -> ssl.SSLContext | bool:
        """TLS checking the broker's certificate against the access's CA, if it names one."""
        return ssl.create_default_context(cafile=self.access.ca) if self.access.ca else False

    def _client(self) -> gmqtt.Client:
        client = gmqtt.Client(self.client_id or "", logger=log)
        client.set_config({"reconnect_delay": 1})
        if self.access.username:
            client.set_auth_credentials(self.access.username, self.access.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client: gmqtt.Client, flags: int, rc: int, properties: dict) -> None:
        if not self._stats.connected:
            log.info("connected to broker %s", self.access)
        self._stats.connected = True
        self._stats.connects += 1
        self._wakeup.set()

    def _on_disconnect(self, client: gmqtt.Client, packet: object, exc: object = None) -> None:
        if self._stats.connected:
            log.warning("lost broker %s; buffering and reconnecting", self.access)
        self._stats.connected = False
        self._wakeup.set()

    async def _publish_while_connected(self, client: gmqtt.Client) -> None:
        """Write what the buffer holds while connected; return when gmqtt has been unable to
        reconnect for RECONNECT_GRACE_SECONDS (a fresh client then starts over)."""
        lost_since: float | None = None
        while True:
            if not client.is_connected:
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > RECONNECT_GRACE_SECONDS:
                    return
                await self._nap(1.0)
                continue
            lost_since = None
            if not self._buffer:
                self._idle.set()
                await self._nap(1.0)
                continue
            count = min(_BATCH, len(self._buffer))
            for _ in range(count):
                topic, payload = self._buffer.get_nowait()  # type: ignore[misc]
                client.publish(topic, payload, qos=self.qos)
            self._stats.published += count
            await asyncio.sleep(0)  # the event loop's turn: BLE notifications, the socket

    async def _nap(self, seconds: float) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()


async def _close(client: gmqtt.Client) -> None:
    """Disconnect (which also stops gmqtt's reconnecting), whatever state the client is in."""
    try:
        await asyncio.wait_for(client.disconnect(), 5)
    except Exception as exc:  # a dead connection: nothing left to close
        log.debug("closing the MQTT client: %s", exc)
