"""One MQTT subscription per topic on the edge node's broker, acknowledged only once stored.

The agent keeps a persistent session (fixed client id, clean_session off) and subscribes at
QoS 1 with manual acknowledgement: the broker holds readings while the agent is away and
sends again whatever was not acknowledged, and the agent acknowledges a reading only after
its durable queue committed it. So neither an agent crash nor a restart loses a reading
(it may see one twice; line-protocol consumers store it once, same series and timestamp).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiomqtt
import paho.mqtt.client as mqtt

from fluidos_sensors.backoff import Backoff
from mapper.broker import BrokerAccess
from mapper.dataplane.publisher import settle_disconnect

log = logging.getLogger(__name__)

QOS = 1
LINGER_SECONDS = 0.002
LINGER_BATCH = 200
OnBatch = Callable[[list[aiomqtt.Message]], None]


READ_BURST = 512


def _read_in_bursts(client: aiomqtt.Client) -> None:
    """Read every packet the socket holds per readiness event, not one.

    aiomqtt hands paho's socket to the event loop and calls `loop_read()` when it is
    readable; paho then reads one packet, so a backlog costs one event-loop round (a select
    and a callback) per reading. Same reader, same error handling, up to READ_BURST packets.
    """
    paho = client._client
    sock = paho.socket()
    if sock is None:
        return
    loop = asyncio.get_running_loop()
    disconnected = client._disconnected

    def read() -> None:
        try:
            for _ in range(READ_BURST):
                if paho._sock is None:
                    return
                rc = paho._packet_read()
                if rc == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN:
                    return
                if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS:
                    paho._loop_rc_handle(rc)
                    return
        except Exception as exc:  # a broken connection: what aiomqtt's reader does
            if not disconnected.done():
                disconnected.set_exception(exc)

    loop.remove_reader(sock.fileno())
    loop.add_reader(sock.fileno(), read)


class Subscriber:
    """Subscribes to `topics` (changeable at any time) and hands messages over in batches."""

    def __init__(
        self,
        access: BrokerAccess,
        client_id: str,
        on_batch: OnBatch,
        *,
        keepalive: int = 15,
        backoff: Callable[[], Backoff] = lambda: Backoff(0.2, 10.0),
    ) -> None:
        self.access = access
        self.client_id = client_id
        self.on_batch = on_batch
        self.keepalive = keepalive
        self._backoff = backoff
        self._wanted: set[str] = set()
        self._subscribed: set[str] = set()
        self._client: aiomqtt.Client | None = None
        self._changed = asyncio.Event()
        self.connected = False
        self.connects = 0
        self.received = 0

    def set_topics(self, topics: set[str], stale: set[str] = frozenset()) -> None:
        """The topics to be subscribed to; `stale` ones (a previous run's) are unsubscribed."""
        self._wanted = set(topics)
        self._subscribed |= set(stale) - self._wanted
        self._changed.set()

    async def run(self) -> None:
        """Connect, subscribe, deliver batches; reconnect with capped backoff, until cancelled."""
        backoff = self._backoff()
        outage_since: float | None = None
        while True:
            client = aiomqtt.Client(
                self.access.host,
                self.access.port,
                username=self.access.username,
                password=self.access.password,
                identifier=self.client_id,
                clean_session=False,
                keepalive=self.keepalive,
                timeout=10,
            )
            # aiomqtt has no option for it: paho's own switch, on the client aiomqtt wraps.
            client._client.manual_ack_set(True)
            try:
                async with client:
                    _read_in_bursts(client)
                    self._client = client
                    self.connected = True
                    self.connects += 1
                    backoff.reset()
                    if outage_since is not None:
                        log.info(
                            "broker %s back after %.1f s",
                            self.access,
                            time.monotonic() - outage_since,
                        )
                        outage_since = None
                    else:
                        log.info("connected to broker %s", self.access)
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                settle_disconnect(client)
                if outage_since is None:
                    outage_since = time.monotonic()
                    log.warning("broker %s unavailable: %s", self.access, exc)
            finally:
                self._client = None
                self.connected = False
            await asyncio.sleep(backoff.next())

    async def _serve(self, client: aiomqtt.Client) -> None:
        synced: set[str] = set()
        pending: list[aiomqtt.Message] = []
        arrived = asyncio.Event()

        async def read() -> None:
            async for message in client.messages:
                pending.append(message)
                arrived.set()

        reader = asyncio.create_task(read(), name="mqtt read")
        try:
            self._changed.set()
            while True:
                if self._changed.is_set():
                    self._changed.clear()
                    synced = await self._sync(client, synced)
                if reader.done():
                    reader.result()  # raises the disconnect
                    raise aiomqtt.MqttError("message stream ended")
                if not pending:
                    wakers = [
                        asyncio.ensure_future(arrived.wait()),
                        asyncio.ensure_future(self._changed.wait()),
                    ]
                    await asyncio.wait([reader, *wakers], return_when=asyncio.FIRST_COMPLETED)
                    for waker in wakers:
                        waker.cancel()
                    arrived.clear()
                    continue
                if len(pending) < LINGER_BATCH:
                    # Under load, readings come one by one: a moment's wait turns hundreds of
                    # commits into one, for a couple of milliseconds of latency.
                    await asyncio.sleep(LINGER_SECONDS)
                batch, pending[:] = list(pending), []
                self.received += len(batch)
                self.on_batch(batch)  # stores (and commits) them
                for message in batch:
                    if message.qos > 0:
                        client._client.ack(message.mid, message.qos)
                await asyncio.sleep(0)  # let the reader and the deliveries run
        finally:
            reader.cancel()

    async def _sync(self, client: aiomqtt.Client, synced: set[str]) -> set[str]:
        """Subscribe to new topics, unsubscribe from dropped ones (a persistent session keeps
        subscriptions across reconnects and restarts, so these are stated every time)."""
        wanted = set(self._wanted)
        for topic in sorted(wanted - synced):
            await client.subscribe(topic, qos=QOS)
        for topic in sorted((synced | self._subscribed) - wanted):
            await client.unsubscribe(topic)
        self._subscribed = set(wanted)
        return wanted
