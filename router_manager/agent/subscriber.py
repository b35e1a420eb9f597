"""One MQTT subscription per topic on the edge node's broker, acknowledged only once stored.

The agent keeps a persistent session (MQTT 3.1.1, fixed client id, clean session off) and
subscribes at QoS 1 without optimistic acknowledgement: the broker holds readings while the
agent is away and sends again whatever was not acknowledged, and the agent acknowledges a
reading only after its durable queue committed it. So neither an agent crash nor a restart
loses a reading (it may see one twice; line-protocol consumers store it once, same series
and timestamp).

gmqtt, not the paho-based aiomqtt the mapper publishes with: it parses packets from the
socket's buffer on the event loop, where paho makes several `recv` calls per packet. gmqtt
still runs a task per QoS 1 message and writes its PUBACK alone; the agent takes over just
that step (`_on_qos1`): a message is queued with its packet id, and once its batch is
stored the batch's PUBACKs go out in one write, on the connection it came by. Reading MQTT
is most of the agent's work per reading (`bench/bench_router.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable, Set
from dataclasses import dataclass

import gmqtt
from gmqtt.mqtt.constants import MQTTv311

from fluidos_sensors.backoff import Backoff
from fluidos_sensors.broker import BrokerAccess

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


_PUBACK = struct.Struct("!BBH")  # MQTT 3.1.1 PUBACK: type 4, remaining length 2, packet id


def pubacks(mids: list[int]) -> bytes:
    """The PUBACK packets of these packet ids, back to back (one write)."""
    return b"".join(_PUBACK.pack(0x40, 2, mid) for mid in mids)


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
        self._changed = False  # topics to (un)subscribe
        self._wakeup = asyncio.Event()  # a message, a topic change, a connect or a loss
        self._pending: list[Inbound] = []
        # Packet ids to acknowledge once the pending messages are stored, per connection.
        self._unacked: dict[object, list[int]] = {}
        self.connected = False
        self.connects = 0
        self.received = 0

    def set_topics(self, topics: Set[str], stale: Set[str] = frozenset()) -> None:
        """The topics to be subscribed to; `stale` ones (a previous run's) are unsubscribed."""
        self._wanted = set(topics)
        self._subscribed |= set(stale) - self._wanted
        self._changed = True
        self._wakeup.set()

    async def run(self) -> None:
        """Connect, subscribe, hand batches over; reconnect, until cancelled."""
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
            except Exception:
                # Not stored, not acknowledged: on a new connection the broker sends them again.
                log.exception("storing readings failed; reconnecting to receive them again")
                await asyncio.sleep(backoff.next())
            finally:
                self.connected = False
                self._pending, self._unacked = [], {}
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
        client.on_message = self._on_message  # QoS 0 (a broker may grant less than asked)
        client.on_subscribe = self._on_subscribe
        handler = client._package_handler
        if not callable(getattr(handler, "_handle_qos_1_publish_packet", None)):
            raise RuntimeError(f"gmqtt {gmqtt.__version__} is not the one the agent supports")
        # Instead of a task per message and a PUBACK each when it returns.
        handler._handle_qos_1_publish_packet = lambda mid, packet, topic, properties: self._on_qos1(
            handler.current_connection, mid, topic, packet
        )
        return client

    # gmqtt's callbacks -------------------------------------------------------------------

    def _on_connect(self, client: gmqtt.Client, flags: int, rc: int, properties: dict) -> None:
        self.connected = True
        self.connects += 1
        log.info("connected to broker %s", self.access)
        self._changed = True  # a persistent session may be gone (broker without persistence)
        self._wakeup.set()

    def _on_disconnect(self, client: gmqtt.Client, packet: object, exc: object = None) -> None:
        if self.connected:
            log.warning("lost broker %s; reconnecting", self.access)
        self.connected = False
        self._wakeup.set()

    def _on_subscribe(
        self, client: gmqtt.Client, mid: int, granted: tuple[int, ...], properties: dict
    ) -> None:
        refused = [code for code in granted if code >= 0x80]
        if refused:
            log.error("broker %s refused a subscription (reason %s)", self.access, refused)

    def _on_message(
        self, client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: dict
    ) -> None:
        """A QoS 0 message: queued, nothing to acknowledge."""
        self._queue(topic, payload)

    def _on_qos1(self, connection: object, mid: int, topic: str | bytes, payload: bytes) -> None:
        """A QoS 1 message: queued, acknowledged on `connection` once stored."""
        self._queue(topic, payload)
        self._unacked.setdefault(connection, []).append(mid)

    def _queue(self, topic: str | bytes, payload: bytes) -> None:
        if isinstance(topic, bytes):  # gmqtt passes a topic that is not UTF-8 as it came
            topic = topic.decode("utf-8", "replace")
        self._pending.append(Inbound(topic, bytes(payload)))
        self._wakeup.set()

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
            if self._changed and self.connected:
                self._changed = False
                synced = self._sync(client, synced)
            if not self._pending:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wakeup.wait()
                continue
            if len(self._pending) < LINGER_BATCH:
                # Under load, readings come one by one: a moment's wait turns hundreds of
                # commits into one, for a couple of milliseconds of latency.
                await asyncio.sleep(LINGER_SECONDS)
            self._hand_over(client)
            await asyncio.sleep(0)  # let the acknowledgements and the deliveries run

    def _hand_over(self, client: gmqtt.Client) -> None:
        """The pending messages to `on_batch`, then acknowledged, on the connection each
        came by: after a reconnect the broker may have given an old packet id to another
        reading, not stored yet. Those of a lost connection are not acknowledged (the broker
        sends them again: stored twice, the same series and timestamp downstream)."""
        batch, self._pending = self._pending, []
        unacked, self._unacked = self._unacked, {}
        self.received += len(batch)
        self.on_batch(batch)  # stores (and commits) them; raising leaves them unacknowledged
        current = client._package_handler.current_connection
        for connection, mids in unacked.items():
            if connection is current and connection is not None and not connection.is_closing():
                connection.send_package(pubacks(mids))

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


async def _close(client: gmqtt.Client) -> None:
    """Disconnect (which also stops gmqtt's reconnecting), whatever state the client is in."""
    try:
        await asyncio.wait_for(client.disconnect(), 5)
    except Exception as exc:  # a dead connection: nothing left to close
        log.debug("closing the MQTT client: %s", exc)
