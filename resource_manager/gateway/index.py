"""The gateway's in-memory index of Flavors: filtered sensor queries without touching the API.

Fed by the Flavor watch (``upsert``/``delete``/``replace``), it keeps each flavor's REAR item
already JSON-encoded and, for Sensor flavors, one numpy column per filterable number (NaN when
unknown) and one interned code per match field, so a query is a handful of vectorised
comparisons over all rows and the answer is a join of ready bytes. Its results equal
``fluidos_sensors.filters.matches`` on the same flavors (tests/unit/test_gateway_index.py
proves it with random flavors and filters); keep the two in step.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fluidos_sensors.filters import NumberRange, SensorFilter
from fluidos_sensors.flavor import FlavorError, SensorFlavor, is_sensor_flavor, sensor_from_flavor
from fluidos_sensors.rear.wire import flavor_item

log = logging.getLogger("resource_manager.gateway.index")

# The tolerances of NumberRange.contains for an exact value (math.isclose).
_REL_TOL = 1e-9
_ABS_TOL = 1e-12
_NONE = -1  # code of "no value" in the text columns
_FIRST_CAPACITY = 64

_MATCH_COLUMNS = {  # SensorFilter field -> column (sensor_type is multi-valued, see _types)
    "sensor_model": "model",
    "sensor_manufacturer": "manufacturer",
    "sensor_category": "category",
    "sensor_market": "market",
    "node": "node",
}
_NUMBER_COLUMNS = {  # SensorFilter field -> column
    "sampling_rate": "rate",
    "latency": "latency",
    "observed_latency": "observed",
    "consumption": "consumption",
}


def _fold(text: str) -> str:
    """The case-insensitive form match filters compare (as filters.matches does)."""
    return text.strip().casefold()


@dataclass(frozen=True)
class IndexedFlavor:
    """What the gateway knows of one flavor without asking the API server."""

    name: str
    available: bool
    sensor: bool
    item: bytes  # the REAR list item, JSON


class FlavorIndex:
    """Flavors by name, with columns for filtered Sensor queries. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._codes: dict[str, int] = {}  # folded text -> code, shared by every text column
        self._units: dict[str, int] = {}  # consumption unit (exact) -> code
        self._rows: dict[str, int] = {}  # flavor name -> row
        self._free: list[int] = []
        self._size = 0  # rows in use or freed: every live row is < _size
        # Object arrays, so a query picks its answers with one fancy index.
        self._names: np.ndarray = np.empty(0, dtype=object)  # str or None per row
        self._items: np.ndarray = np.empty(0, dtype=object)  # bytes or None per row
        self._order: np.ndarray | None = None  # live rows sorted by name; None: recompute
        self._capacity = 0
        self._allocate(_FIRST_CAPACITY, types=1, accuracies=1)

    # ---------------------------------------------------------------------------- storage

    def _allocate(self, capacity: int, *, types: int, accuracies: int) -> None:
        """(Re)allocate every column with room for `capacity` rows, keeping what is there."""

        def grown(old: np.ndarray | None, shape: tuple[int, ...], fill: Any, dtype: Any):
            new = np.full(shape, fill, dtype=dtype)
            if old is not None:
                new[tuple(slice(0, n) for n in old.shape)] = old
            return new

        cols = getattr(self, "_cols", {})
        spec: dict[str, tuple[tuple[int, ...], Any, Any]] = {
            "alive": ((capacity,), False, bool),
            "available": ((capacity,), False, bool),
            "sensor": ((capacity,), False, bool),
            "rate": ((capacity,), np.nan, np.float64),
            "latency": ((capacity,), np.nan, np.float64),
            "observed": ((capacity,), np.nan, np.float64),
            "consumption": ((capacity,), np.nan, np.float64),
            "consumption_unit": ((capacity,), _NONE, np.int32),
            "model": ((capacity,), _NONE, np.int32),
            "manufacturer": ((capacity,), _NONE, np.int32),
            "category": ((capacity,), _NONE, np.int32),
            "market": ((capacity,), _NONE, np.int32),
            "node": ((capacity,), _NONE, np.int32),
            "types": ((capacity, types), _NONE, np.int32),
            "accuracy": ((capacity, accuracies), np.nan, np.float64),
            "accuracy_type": ((capacity, accuracies), _NONE, np.int32),
        }
        self._cols: dict[str, np.ndarray] = {
            name: grown(cols.get(name), shape, fill, dtype)
            for name, (shape, fill, dtype) in spec.items()
        }
        self._capacity = capacity
        for attribute in ("_names", "_items"):
            old = getattr(self, attribute)
            if len(old) < capacity:
                new = np.empty(capacity, dtype=object)
                new[: len(old)] = old
                setattr(self, attribute, new)

    def _code(self, text: str) -> int:
        return self._codes.setdefault(_fold(text), len(self._codes))

    def _unit(self, unit: str) -> int:
        return self._units.setdefault(unit, len(self._units))

    def _row_for(self, name: str) -> int:
        row = self._rows.get(name)
        if row is not None:
            return row
        if self._free:
            row = self._free.pop()
        else:
            if self._size == self._capacity:
                cols = self._cols
                self._allocate(
                    self._capacity * 2,
                    types=cols["types"].shape[1],
                    accuracies=cols["accuracy"].shape[1],
                )
            row = self._size
            self._size += 1
        self._rows[name] = row
        self._names[row] = name
        self._order = None
        return row

    def _clear_row(self, row: int) -> None:
        cols = self._cols
        for name in ("alive", "available", "sensor"):
            cols[name][row] = False
        for name in ("rate", "latency", "observed", "consumption", "accuracy"):
            cols[name][row] = np.nan
        for name in (
            "consumption_unit",
            *_MATCH_COLUMNS.values(),
            "types",
            "accuracy_type",
        ):
            cols[name][row] = _NONE

    # ---------------------------------------------------------------------------- updates

    def upsert(self, flavor: Mapping[str, Any]) -> None:
        """Add or replace a Flavor object (as the API server or a watch event gives it).

        A Flavor that cannot be listed (or a Sensor flavor whose sensor cannot be read) is
        dropped from the index with a warning naming it and the field: it is not for sale.
        """
        name = (flavor.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            log.warning("ignoring a Flavor without metadata.name")
            return
        try:
            item = flavor_item(flavor)
            view = sensor_from_flavor(flavor) if is_sensor_flavor(flavor) else None
        except (ValueError, FlavorError) as exc:
            log.warning("not offering Flavor %s: %s", name, exc)
            self.delete(name)
            return
        encoded = json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()
        with self._lock:
            self._store(name, encoded, item["availability"], view)

    def _store(self, name: str, item: bytes, available: bool, view: SensorFlavor | None) -> None:
        row = self._row_for(name)
        self._clear_row(row)
        self._items[row] = item
        cols = self._cols
        cols["alive"][row] = True
        cols["available"][row] = available
        if view is None:
            return
        sensor = view.sensor
        cols["sensor"][row] = True
        for column, value in (
            ("rate", sensor.sampling_rate_hz),
            ("latency", sensor.latency_ms),
            ("observed", view.observed_latency_ms),
            ("consumption", sensor.consumption),
        ):
            cols[column][row] = np.nan if value is None else value
        cols["consumption_unit"][row] = self._unit(sensor.units.consumption)
        for column, text in (
            ("model", sensor.model),
            ("manufacturer", sensor.manufacturer),
            ("category", sensor.category),
            ("market", sensor.market),
            ("node", view.node),
        ):
            cols[column][row] = self._code(text)
        types = [self._code(kind) for kind in sensor.types]
        accuracy = [(self._code(a.quantity), a.value) for a in sensor.accuracy]
        if len(types) > cols["types"].shape[1] or len(accuracy) > cols["accuracy"].shape[1]:
            self._allocate(
                self._capacity,
                types=max(len(types), cols["types"].shape[1]),
                accuracies=max(len(accuracy), cols["accuracy"].shape[1]),
            )
            cols = self._cols
        cols["types"][row, : len(types)] = types
        for index, (quantity, value) in enumerate(accuracy):
            cols["accuracy_type"][row, index] = quantity
            cols["accuracy"][row, index] = value

    def delete(self, name: str) -> None:
        """Forget a Flavor (deleted, or no longer offerable)."""
        with self._lock:
            row = self._rows.pop(name, None)
            if row is None:
                return
            self._clear_row(row)
            self._names[row] = None
            self._items[row] = None
            self._free.append(row)
            self._order = None

    def replace(self, flavors: Iterable[Mapping[str, Any]]) -> None:
        """Make the index hold exactly these Flavors (after a (re)list)."""
        seen: set[str] = set()
        for flavor in flavors:
            name = (flavor.get("metadata") or {}).get("name")
            if isinstance(name, str):
                seen.add(name)
            self.upsert(flavor)
        with self._lock:
            for gone in set(self._rows) - seen:
                self.delete(gone)

    # ---------------------------------------------------------------------------- reading

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def get(self, name: str) -> IndexedFlavor | None:
        """One flavor by name, or None."""
        with self._lock:
            row = self._rows.get(name)
            if row is None:
                return None
            item = self._items[row]
            assert item is not None
            return IndexedFlavor(
                name=name,
                available=bool(self._cols["available"][row]),
                sensor=bool(self._cols["sensor"][row]),
                item=item,
            )

    def _sorted_rows(self) -> np.ndarray:
        if self._order is None:
            live = sorted(self._rows.items())
            self._order = np.fromiter((row for _, row in live), dtype=np.int64, count=len(live))
        return self._order

    def _select(self, mask: np.ndarray) -> np.ndarray:
        order = self._sorted_rows()
        return order[mask[order]]

    def available_items(self, *, sensors: bool = True) -> list[bytes]:
        """REAR items of every available flavor (any type; without Sensor flavors when
        `sensors` is False), by name."""
        with self._lock:
            cols = self._cols
            mask = cols["alive"][: self._size] & cols["available"][: self._size]
            if not sensors:
                mask &= ~cols["sensor"][: self._size]
            return self._items[self._select(mask)].tolist()

    def query(self, sensor_filter: SensorFilter) -> list[str]:
        """Names of the available Sensor flavors meeting every condition, by name."""
        with self._lock:
            return self._names[self._query_rows(sensor_filter)].tolist()

    def query_items(self, sensor_filter: SensorFilter) -> list[bytes]:
        """REAR items of the available Sensor flavors meeting every condition, by name."""
        with self._lock:
            return self._items[self._query_rows(sensor_filter)].tolist()

    def _query_rows(self, wanted: SensorFilter) -> np.ndarray:
        n = self._size
        cols = {name: column[:n] for name, column in self._cols.items()}
        mask = cols["alive"] & cols["available"] & cols["sensor"]
        nothing = np.empty(0, dtype=np.int64)

        type_codes: list[int] = []
        for want in wanted.sensor_type:
            code = self._codes.get(_fold(want))
            if code is None:
                return nothing
            type_codes.append(code)
            mask &= _any_column(cols["types"] == code)
        for field_name, column in _MATCH_COLUMNS.items():
            for want in getattr(wanted, field_name):
                code = self._codes.get(_fold(want))
                if code is None:
                    return nothing
                mask &= cols[column] == code
        for field_name, column in _NUMBER_COLUMNS.items():
            bounds: NumberRange = getattr(wanted, field_name)
            if bounds.is_set:
                mask &= _within(cols[column], bounds)
        if wanted.consumption.is_set:
            unit = self._units.get(wanted.consumption.unit)
            if unit is None:
                return nothing
            mask &= cols["consumption_unit"] == unit
        if wanted.accuracy.is_set:
            # With a type filter only the accuracy of the wanted quantities counts.
            candidates = _within(cols["accuracy"], wanted.accuracy)
            if type_codes:
                candidates &= np.isin(cols["accuracy_type"], type_codes)
            mask &= _any_column(candidates)
        return self._select(mask)


def _any_column(matrix: np.ndarray) -> np.ndarray:
    """Rows with any True: column by column (``any(axis=1)`` is slow over few columns)."""
    result = matrix[:, 0].copy()
    for column in range(1, matrix.shape[1]):
        result |= matrix[:, column]
    return result


def _within(values: np.ndarray, bounds: NumberRange) -> np.ndarray:
    """NumberRange.contains over a column; NaN (unknown) is never within set bounds."""
    mask = np.ones(values.shape, dtype=bool)
    if bounds.min is not None:
        mask &= values >= bounds.min
    if bounds.max is not None:
        mask &= values <= bounds.max
    if bounds.exact is not None:
        exact = bounds.exact
        with np.errstate(invalid="ignore"):
            tolerance = np.maximum(_REL_TOL * np.maximum(np.abs(values), abs(exact)), _ABS_TOL)
            mask &= (values == exact) | (np.abs(values - exact) <= tolerance)
    return mask
