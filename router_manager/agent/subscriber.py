"""One MQTT subscription per topic on the edge node's broker, acknowledged only once stored.

The agent keeps a persistent session (MQTT 3.1.1, fixed client id, clean session off) and
subscribes at QoS 1 without optimistic acknowledgement: the broker holds readings while the
agent is away and sends again whatever was not acknowledged, and the agent acknowledges a
reading only after its durable queue committed it. So neither an agent crash nor a restart
loses a reading (it may see one twice; line-protocol consumers store it once, same series
and timestamp).

gmqtt, not the paho-based aiomqtt the mapper publishes with: it parses packets from the
socket's buffer on the event loop, where paho makes several `recv` calls per packet. The
agent's work per reading is mostly reading MQTT, and gmqtt takes well under half paho's CPU
for it (`bench/bench_router.py`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import gmqtt
from gmqtt.mqtt.constants import MQTTv311

from fluidos_sensors.backoff import Backoff
from mapper.broker import BrokerAccess

log = logging.getLogger(__name__)

QOS = 1
LINGER_SECONDS = 0.002
LINGER_BATCH = 200
CONNECT_TIMEOUT_SECONDS = 10.0
# gmqtt reconnects by itself after a lost connection; past this, a fresh client is made.
RECONNECT_GRACE_SECONDS = 30.0
RECONNECT_DELAY_SECONDS = 1


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message as it came from the broker."""

    topic: str
    payload: bytes


OnBatch = Callable[[list[Inbound]], None]


class StaleAcknowledgement(Exception):
    """A reading was stored after its connection was lost: no PUBACK on the next connection.

    gmqtt acknowledges on whatever connection is current when the handler returns, and the
    broker may by then have given that packet id to another reading, which would be
    acknowledged before it is stored. Raising instead sends nothing; the broker sends the
    reading again (stored twice, the same series and timestamp downstream).
    """


def _ignore_stale(
    previous: Callable | None, loop: asyncio.AbstractEventLoop, context: dict
) -> None:
    """The loop's exception handler, minus StaleAcknowledgement (raised on purpose)."""
    if isinstance(context.get("exception"), StaleAcknowledgement):
        return
    if previous is not None:
        previous(loop, context)
    else:
        loop.default_exception_handler(context)


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
        self._changed = asyncio.Event()
        self._arrived = asyncio.Event()
        self._link = asyncio.Event()  # set on every connect and every loss
        self._pending: list[Inbound] = []
        self._stored: asyncio.Future[None] | None = None
        self._generation = 0  # of the connection: one more at every loss
        self.connected = False
        self.connects = 0
        self.received = 0

    def set_topics(self, topics: set[str], stale: set[str] = frozenset()) -> None:
        """The topics to be subscribed to; `stale` ones (a previous run's) are unsubscribed."""
        self._wanted = set(topics)
        self._subscribed |= set(stale) - self._wanted
        self._changed.set()

    async def run(self) -> None:
        """Connect, subscribe, hand batches over; reconnect, until cancelled."""
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        loop.set_exception_handler(functools.partial(_ignore_stale, previous))
        try:
            await self._run()
        finally:
            loop.set_exception_handler(previous)

    async def _run(self) -> None:
        backoff = self._backoff()
        outage_since: float | None = None
        while True:
            client = self._client()
            try:
                await asyncio.wait_for(
                    client.connect(
                        self.access.host,
                        self.access.port,
                        keepalive=self.keepalive,
                        version=MQTTv311,  # no per-packet properties to parse
                    ),
                    CONNECT_TIMEOUT_SECONDS,
                )
            except (OSError, TimeoutError, gmqtt.MQTTConnectError) as exc:
                await _close(client)
                if outage_since is None:
                    outage_since = time.monotonic()
                    log.warning("broker %s unavailable: %s", self.access, exc or type(exc))
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            if outage_since is not None:
                away = time.monotonic() - outage_since
                log.info("broker %s back after %.1f s", self.access, away)
                outage_since = None
            try:
                await self._serve(client)
            finally:
                self.connected = False
                self._generation += 1
                await _close(client)
            outage_since = time.monotonic()

    def _client(self) -> gmqtt.Client:
        client = gmqtt.Client(
            self.client_id,
            clean_session=False,
            optimistic_acknowledgement=False,  # acknowledged when `on_message` returns
            logger=log,
        )
        client.set_config({"reconnect_delay": RECONNECT_DELAY_SECONDS})
        if self.access.username:
            client.set_auth_credentials(self.access.username, self.access.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # gmqtt's callbacks -------------------------------------------------------------------

    def _on_connect(self, client: gmqtt.Client, flags: int, rc: int, properties: dict) -> None:
        self.connected = True
        self.connects += 1
        log.info("connected to broker %s", self.access)
        self._link.set()
        self._changed.set()  # a persistent session may be gone (broker without persistence)

    def _on_disconnect(self, client: gmqtt.Client, packet: object, exc: object = None) -> None:
        if self.connected:
            log.warning("lost broker %s; reconnecting", self.access)
        self.connected = False
        self._generation += 1
        self._link.set()

    def _on_subscribe(
        self, client: gmqtt.Client, mid: int, granted: tuple[int, ...], properties: dict
    ) -> None:
        refused = [code for code in granted if code >= 0x80]
        if refused:
            log.error("broker %s refused a subscription (reason %s)", self.access, refused)

    async def _on_message(
        self, client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: dict
    ) -> int:
        """Queue the message; return (so that gmqtt acknowledges it) once it is stored."""
        generation = self._generation
        if self._stored is None:
            self._stored = asyncio.get_running_loop().create_future()
        stored = self._stored
        self._pending.append(Inbound(topic, bytes(payload)))
        self._arrived.set()
        await stored
        if generation != self._generation:
            raise StaleAcknowledgement(topic)
        return 0  # PUBACK "success"

    # batching ----------------------------------------------------------------------------

    async def _serve(self, client: gmqtt.Client) -> None:
        """Sync subscriptions and hand batches over while the client is (or gets) connected."""
        synced: set[str] = set()
        lost_since: float | None = None
        while True:
            if not self.connected:
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > RECONNECT_GRACE_SECONDS:
                    return  # gmqtt gave up (or is stuck): start over with a fresh client
                synced = set()
            else:
                lost_since = None
            if self._changed.is_set() and self.connected:
                self._changed.clear()
                synced = self._sync(client, synced)
            if not self._pending:
                await _first(self._arrived, self._changed, self._link, timeout=1.0)
                self._arrived.clear()
                self._link.clear()
                continue
            if len(self._pending) < LINGER_BATCH:
                # Under load, readings come one by one: a moment's wait turns hundreds of
                # commits into one, for a couple of milliseconds of latency.
                await asyncio.sleep(LINGER_SECONDS)
            self._hand_over()
            await asyncio.sleep(0)  # let the acknowledgements and the deliveries run

    def _hand_over(self) -> None:
        """The pending messages to `on_batch`, then released for acknowledgement."""
        batch, self._pending = self._pending, []
        stored, self._stored = self._stored, None
        self.received += len(batch)
        self.on_batch(batch)  # stores (and commits) them; raising leaves them unacknowledged
        if stored is not None and not stored.done():  # cancelled only at shutdown
            stored.set_result(None)

    def _sync(self, client: gmqtt.Client, synced: set[str]) -> set[str]:
        """Subscribe to new topics, unsubscribe from dropped ones (a persistent session keeps
        subscriptions across reconnects and restarts, so these are stated every time)."""
        wanted = set(self._wanted)
        for topic in sorted(wanted - synced):
            client.subscribe(topic, qos=QOS)
        for topic in sorted((synced | self._subscribed) - wanted):
            client.unsubscribe(topic)
        self._subscribed = set(wanted)
        return wanted


async def _first(*events: asyncio.Event, timeout: float) -> None:
    """Wait until one of `events` is set, or `timeout`."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _close(client: gmqtt.Client) -> None:
    """Disconnect (which also stops gmqtt's reconnecting), whatever state the client is in."""
    try:
        await asyncio.wait_for(client.disconnect(), 5)
    except Exception as exc:  # a dead connection: nothing left to close
        log.debug("closing the MQTT client: %s", exc)
