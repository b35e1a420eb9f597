"""The rules of the sensor marketplace: list, reserve, purchase, release, expire.

Each consumer sees and changes only its own transactions and contracts (anything else is
"not found"). A sensor is sold to many consumers (multicast) up to a configured number of
contracts plus open reservations, one per consumer. Reservations and purchases of one flavor
are serialised in this process, so two buyers cannot both take the last place.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fluidos_sensors.api import FLUIDOS_NAMESPACE, ROUTE_NAMESPACE
from fluidos_sensors.contract import CONSUMER_LABEL, DELIVERY_SECRET_ANNOTATION, FLAVOR_LABEL
from fluidos_sensors.endpoints import DeliveryPolicy, EndpointError
from fluidos_sensors.filters import SensorFilter
from fluidos_sensors.flavor import FlavorError, is_sensor_flavor, label_safe, sensor_from_flavor
from fluidos_sensors.limits import preview
from fluidos_sensors.rates import (
    RATE_FIELD,
    RATE_SCOPE_LABEL,
    RateError,
    describe_rate,
    offer_problem,
    rate_configuration,
    rate_group,
    rate_scope,
    requested_rate,
    same_rate,
)
from fluidos_sensors.rear.wire import (
    ContractAnswer,
    PurchaseRequest,
    ReservationRequest,
    SensorConfiguration,
    TransactionAnswer,
)
from resource_manager.gateway import objects
from resource_manager.gateway.errors import (
    GatewayError,
    bad_input,
    conflict,
    forbidden,
    not_found,
)
from resource_manager.gateway.index import FlavorIndex
from resource_manager.gateway.store import AlreadyExists, MarketStore

log = logging.getLogger("resource_manager.gateway")

_ENDPOINT_FIELD = "ingressTelemetryEndpoint.endpoint"
_TOMBSTONES_MAX = 10_000
_TOMBSTONE_SECONDS = 3600.0


@dataclass(frozen=True, kw_only=True)
class MarketSettings:
    """What the provider decides about its sales."""

    seller: objects.Seller
    namespace: str = FLUIDOS_NAMESPACE
    secret_namespace: str = ROUTE_NAMESPACE
    reservation_ttl: float = 300.0
    max_consumers_per_sensor: int = 16

    def __post_init__(self) -> None:
        if self.reservation_ttl <= 0:
            raise ValueError("reservation TTL must be more than 0 seconds")
        if self.max_consumers_per_sensor < 1:
            raise ValueError("max consumers per sensor must be at least 1")


class _Expired:
    """Transactions that expired recently, so a late purchase hears 410 rather than 404."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, tuple[str | None, float]] = OrderedDict()

    def add(self, transaction_id: str, consumer: str | None) -> None:
        with self._lock:
            self._seen[transaction_id] = (consumer, time.monotonic())
            self._seen.move_to_end(transaction_id)
            while len(self._seen) > _TOMBSTONES_MAX:
                self._seen.popitem(last=False)

    def expired_for(self, transaction_id: str, consumer: str) -> bool:
        with self._lock:
            seen = self._seen.get(transaction_id)
        return (
            seen is not None
            and seen[0] == consumer
            and time.monotonic() - seen[1] < _TOMBSTONE_SECONDS
        )


class Marketplace:
    """Sensor sales of one provider: the FLUIDOS objects in `store`, the offer in `index`."""

    def __init__(
        self,
        settings: MarketSettings,
        store: MarketStore,
        index: FlavorIndex,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.index = index
        self._clock = clock
        self._expired = _Expired()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, flavor: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(flavor, threading.Lock())

    # ------------------------------------------------------------------------ discovery

    def flavors(self) -> list[bytes]:
        """Every available flavor, REAR-encoded."""
        return self.index.available_items()

    def sensor_flavors(self, sensor_filter: SensorFilter) -> list[bytes]:
        """Available Sensor flavors meeting every condition, REAR-encoded."""
        return self.index.query_items(sensor_filter)

    # ------------------------------------------------------------------------ reserve

    def reserve(self, consumer: str, request: ReservationRequest) -> TransactionAnswer:
        """Hold a place on a sensor for `reservation_ttl` seconds."""
        # The buyer is whoever the token proves: a body may not buy in another's name.
        if request.buyer.node_id != consumer:
            raise forbidden(
                f"buyerID.ID {preview(request.buyer.node_id)} is not the consumer this token "
                f'belongs to ("{consumer}"); the buyer is always the token\'s consumer',
                "buyerID.ID",
            )
        name = request.flavor_id
        offered = self.index.get(name)
        if offered is None:
            raise not_found(f'Flavor "{name}"', "flavorID")
        if not offered.sensor:
            raise bad_input(
                f'Flavor "{name}" is not a Sensor flavor; this gateway sells sensors', "flavorID"
            )
        try:
            rate = requested_rate(request.configuration.wire() if request.configuration else None)
        except RateError as exc:
            raise bad_input(f'Flavor "{name}": {exc}', exc.field) from None
        if rate is None:
            return self._reserve(consumer, request, None)
        scope, group = self._rate_scope(name, rate)
        # Kept in one spelling (Hz, no unit), which the router manager and the mapper read.
        canonical = SensorConfiguration.model_validate(rate_configuration(rate))
        request = request.model_copy(update={"configuration": canonical})
        # One rate group spans several flavors: its lock is taken before any flavor's.
        with self._lock(f"rate-scope:{scope}"):
            self._check_rate_holders(scope, group, rate)
            return self._reserve(consumer, request, scope)

    def _rate_scope(self, name: str, rate: float) -> tuple[str, str]:
        """The rate group a rate asked of a flavor is set in; 409 when the sensor cannot run it."""
        flavor = self.store.get_flavor(name)
        try:
            offered = sensor_from_flavor(flavor)
        except FlavorError:
            raise not_found(f'Flavor "{name}"', "flavorID") from None
        problem = offer_problem(offered.sensor, rate)
        if problem is not None:
            raise conflict(f"the sensor {problem}", RATE_FIELD)
        if not offered.device:
            raise conflict(f'Flavor "{name}" names no Device; its rate cannot be set', RATE_FIELD)
        group = rate_group(offered.sensor)
        return rate_scope(offered.device, group), f'"{group}"'

    def _check_rate_holders(self, scope: str, group: str, rate: float) -> None:
        """409 when an open reservation or a contract holds a different rate in the rate group
        (the buyer's own too: one board runs one rate)."""
        now = self._clock()
        holders = [
            t
            for t in self.store.list_transactions(**{RATE_SCOPE_LABEL: scope})
            if not objects.expired(t, now)
        ] + self.store.list_contracts(**{RATE_SCOPE_LABEL: scope})
        for holder in holders:
            try:
                held = requested_rate((holder.get("spec") or {}).get("configuration"))
            except RateError:
                continue  # not one the gateway made: it holds no rate
            if held is not None and not same_rate(held, rate):
                # Short, rate first: a buyer's status shows it clipped, after the flavor's name.
                raise conflict(
                    f"the rate is held at {describe_rate(held)} in its rate group {group} "
                    f"(sampled together); ask for {describe_rate(held)} or no rate, or wait "
                    "until that hold ends",
                    RATE_FIELD,
                )

    def _reserve(
        self, consumer: str, request: ReservationRequest, scope: str | None
    ) -> TransactionAnswer:
        name = request.flavor_id
        with self._lock(name):
            flavor = self.store.get_flavor(name)
            if flavor is None or not is_sensor_flavor(flavor):
                raise not_found(f'Flavor "{name}"', "flavorID")
            if (flavor.get("spec") or {}).get("availability") is not True:
                raise conflict(f'Flavor "{name}" is not available now', "flavorID")
            try:
                objects.delivery_source(flavor)
            except ValueError as exc:
                log.warning("cannot sell %s: %s", name, exc)
                raise conflict(f'Flavor "{name}" cannot be delivered now', "flavorID") from None
            now = self._clock()
            holders = self._holders(name, now)
            if consumer in holders:
                # The same consumer asking again while its reservation is open is a retry (its
                # client lost the answer): the answer is that reservation, not a refusal that
                # would leave it unbought until it expires.
                mine = self._open_reservation(name, consumer, now)
                if mine is not None:
                    log.info("reservation %s of %s asked again", mine["metadata"]["name"], consumer)
                    return objects.transaction_answer(mine)
                raise conflict(
                    f'consumer "{consumer}" already holds a reservation or contract for '
                    f'Flavor "{name}"',
                    "flavorID",
                )
            limit = self.settings.max_consumers_per_sensor
            if len(holders) >= limit:
                raise conflict(
                    f'Flavor "{name}" is sold out: {len(holders)} of {limit} consumers hold it',
                    "flavorID",
                )
            body = objects.transaction_body(
                transaction_id=objects.new_transaction_id(),
                consumer=consumer,
                request=request,
                namespace=self.settings.namespace,
                now=now,
                ttl_seconds=self.settings.reservation_ttl,
            )
            if scope is not None:
                body["metadata"]["labels"][RATE_SCOPE_LABEL] = scope
            created = self.store.create_transaction(body)
        log.info("reserved %s for %s (transaction %s)", name, consumer, created["metadata"]["name"])
        return objects.transaction_answer(created)

    def _holders(self, flavor: str, now: datetime) -> list[str]:
        """Consumers holding an open reservation or a contract on a flavor (one entry each)."""
        transactions = self._for_flavor(self.store.list_transactions, flavor)
        contracts = self._for_flavor(self.store.list_contracts, flavor)
        open_ones = [t for t in transactions if not objects.expired(t, now)]
        return [objects.owner(obj) or "" for obj in (*open_ones, *contracts)]

    def _open_reservation(self, flavor: str, consumer: str, now: datetime) -> dict[str, Any] | None:
        """The consumer's open (unexpired, not yet purchased) reservation of a flavor."""
        for transaction in self._for_flavor(self.store.list_transactions, flavor):
            if objects.owner(transaction) == consumer and not objects.expired(transaction, now):
                return transaction
        return None

    def _for_flavor(
        self, list_call: Callable[..., list[dict[str, Any]]], flavor: str
    ) -> list[dict[str, Any]]:
        if label_safe(flavor):
            return list_call(**{FLAVOR_LABEL: flavor})
        return [  # a name too long for a label: no label on the objects, select by field
            obj
            for obj in list_call()
            if (obj.get("spec") or {}).get("flavorID") == flavor
            or ((obj.get("spec") or {}).get("flavor") or {}).get("metadata", {}).get("name")
            == flavor
        ]

    # ------------------------------------------------------------------------ purchase

    def purchase(
        self,
        consumer: str,
        transaction_id: str,
        request: PurchaseRequest,
        policy: DeliveryPolicy,
    ) -> ContractAnswer:
        """Turn a reservation into a Contract (+ Allocation, + delivery Secret), if the
        consumer's delivery `policy` allows the endpoint."""
        try:
            policy.check(request.ingress_telemetry_endpoint.endpoint)
        except EndpointError as exc:
            raise bad_input(f"{_ENDPOINT_FIELD} {exc}", _ENDPOINT_FIELD) from None
        if not objects.is_object_name(transaction_id):
            raise not_found(f'transaction "{transaction_id}"')
        try:
            return self._purchase(consumer, transaction_id, request, policy)
        except _AlreadyBought as done:  # a retry of a purchase that succeeded
            return objects.contract_answer(done.contract)

    def _purchase(
        self,
        consumer: str,
        transaction_id: str,
        request: PurchaseRequest,
        policy: DeliveryPolicy,
    ) -> ContractAnswer:
        transaction = self._own_transaction(consumer, transaction_id)
        flavor_name = transaction["spec"]["flavorID"]
        with self._lock(flavor_name):
            # Again under the lock: a concurrent purchase of the same transaction may have won.
            transaction = self._own_transaction(consumer, transaction_id)
            if objects.expired(transaction, self._clock()):
                self._expired.add(transaction_id, consumer)  # before the delete, as the reaper
                self.store.delete_transaction(transaction_id)
                raise GatewayError(
                    410,
                    f'reservation "{transaction_id}" expired at '
                    f"{transaction['spec'].get('expirationTime')}; reserve again",
                )
            flavor = self.store.get_flavor(flavor_name)
            if flavor is None or (flavor.get("spec") or {}).get("availability") is not True:
                raise conflict(f'Flavor "{flavor_name}" is no longer available')
            try:
                source = objects.delivery_source(flavor)
            except ValueError as exc:
                log.warning("cannot sell %s: %s", flavor_name, exc)
                raise conflict(f'Flavor "{flavor_name}" cannot be delivered now') from None
            contract = self._sign(consumer, transaction, flavor, source, request, policy)
            self.store.delete_transaction(transaction_id)
        log.info("sold %s to %s (contract %s)", flavor_name, consumer, contract["metadata"]["name"])
        return objects.contract_answer(contract)

    def _own_transaction(self, consumer: str, transaction_id: str) -> dict[str, Any]:
        transaction = self.store.get_transaction(transaction_id)
        if transaction is not None and objects.owner(transaction) == consumer:
            return transaction
        if transaction is None:
            # A Contract first: a purchase that won against the reaper is bought, not expired.
            done = self.store.get_contract(objects.contract_name(transaction_id))
            if done is not None and objects.owner(done) == consumer:
                raise _AlreadyBought(done)
            if self._expired.expired_for(transaction_id, consumer):
                raise GatewayError(410, f'reservation "{transaction_id}" expired; reserve again')
        raise not_found(f'transaction "{transaction_id}"')

    def _sign(
        self,
        consumer: str,
        transaction: dict[str, Any],
        flavor: dict[str, Any],
        source: objects.DeliverySource,
        request: PurchaseRequest,
        policy: DeliveryPolicy,
    ) -> dict[str, Any]:
        telemetry = request.ingress_telemetry_endpoint
        name = objects.contract_name(transaction["metadata"]["name"])
        secret_name = name if telemetry.authorization else None
        undo: list[Callable[[], object]] = []
        try:
            if telemetry.authorization is not None:
                body = objects.secret_body(
                    name=name, consumer=consumer, authorization=telemetry.authorization
                )
                try:
                    self.store.create_secret(body)
                except AlreadyExists:  # left by an attempt that failed half-way: replace it
                    self.store.delete_secret(name)
                    self.store.create_secret(body)
                undo.append(lambda: self.store.delete_secret(name))
            body = objects.contract_body(
                name=name,
                namespace=self.settings.namespace,
                transaction=transaction,
                flavor=flavor,
                source=source,
                seller=self.settings.seller,
                telemetry=telemetry,
                consumer=consumer,
                secret_name=secret_name,
                policy=policy,
            )
            try:
                contract = self.store.create_contract(body)
                undo.append(lambda: self.store.delete_contract(name))
            except AlreadyExists:  # an earlier attempt got this far, then failed
                existing = self.store.get_contract(name)
                if existing is None or objects.owner(existing) != consumer:
                    raise conflict(f'contract "{name}" is being created; try again') from None
                contract = existing
            with contextlib.suppress(AlreadyExists):
                self.store.create_allocation(objects.allocation_body(contract))
            return contract
        except BaseException:
            for step in reversed(undo):
                try:
                    step()
                except Exception as exc:  # keep the first failure; the reaper cannot help here
                    log.error("purchase of %s: undo failed: %s", name, exc)
            raise

    # ------------------------------------------------------------------------ contracts

    def contracts(self, consumer: str) -> list[ContractAnswer]:
        """The consumer's contracts, oldest first."""
        found = self.store.list_contracts(**{CONSUMER_LABEL: consumer})
        found.sort(
            key=lambda c: (c["metadata"].get("creationTimestamp", ""), c["metadata"]["name"])
        )
        return [objects.contract_answer(c) for c in found if objects.owner(c) == consumer]

    def contract(self, consumer: str, contract_id: str) -> ContractAnswer:
        return objects.contract_answer(self._own_contract(consumer, contract_id))

    def _own_contract(self, consumer: str, contract_id: str) -> dict[str, Any]:
        if objects.is_object_name(contract_id):
            contract = self.store.get_contract(contract_id)
            if contract is not None and objects.owner(contract) == consumer:
                return contract
        raise not_found(f'contract "{contract_id}"')

    def release(self, consumer: str, contract_id: str) -> None:
        """End a contract: Allocation, delivery Secret, then the Contract itself (so a release
        that fails half-way is finished by the next one). Releasing twice is fine."""
        if not objects.is_object_name(contract_id):
            raise not_found(f'contract "{contract_id}"')
        contract = self.store.get_contract(contract_id)
        if contract is None:
            return  # already released
        if objects.owner(contract) != consumer:
            raise not_found(f'contract "{contract_id}"')
        self.store.delete_allocation(objects.allocation_name(contract_id))
        secret = (contract["metadata"].get("annotations") or {}).get(DELIVERY_SECRET_ANNOTATION)
        if secret:
            self.store.delete_secret(secret)
        self.store.delete_contract(contract_id)
        log.info("released contract %s of %s", contract_id, consumer)

    # ------------------------------------------------------------------------ expiry

    def expire_reservations(self) -> int:
        """Delete the reservations whose time is over; how many."""
        now = self._clock()
        count = 0
        for transaction in self.store.list_transactions():
            if objects.expired(transaction, now):
                name = transaction["metadata"]["name"]
                # Remember the expiry before the Transaction goes: a purchase that finds it
                # gone must find the tombstone too (410), never a bare 404 (issue 20.4).
                self._expired.add(name, objects.owner(transaction))
                if self.store.delete_transaction(name):
                    count += 1
                    log.info(
                        "reservation %s of %s expired", name, objects.owner(transaction) or "?"
                    )
        return count


class _AlreadyBought(Exception):
    """The transaction was purchased already: the retry gets the same contract."""

    def __init__(self, contract: dict[str, Any]) -> None:
        super().__init__(contract["metadata"]["name"])
        self.contract = contract
