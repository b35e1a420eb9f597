"""A sensor's sampling rate set by its buyer: asked, offered, shared, granted, carried, reported.

- **Asked** in the reservation's FLUIDOS ``configuration``:
  ``{"type": "Sensor", "data": {"samplingRate": "20"}}`` (Hz, or with a unit: ``"1 kHz"``).
- **Offered**: a sensor states the rates its firmware runs (``samplingRates`` in its ``sensors``
  annotation entry, so in its Flavor). A sensor that states none has a fixed rate.
- **Shared**: a board samples some sensors together (one BlueST characteristic carries
  acceleration, angular velocity and magnetic field), so they run at one rate: the sensors of a
  Device with the same ``samplingRateGroup`` (default: the sensor alone) form a *rate group*.
- **Granted** by the provider's gateway at reservation, only when no other open reservation or
  contract in the same rate group holds a different rate. A buyer who asks for no rate takes the
  rate the board runs. Not chosen: running the highest rate asked and downsampling for the
  others. A buyer asks for a low rate to spare the board's battery and radio, which the higher
  rate would not.
- **Carried**: the router manager writes the rate its Contracts hold as the Device's desired
  property ``samplingRate.<group>`` (``spec.properties[].desired.value``, in Hz). When the last
  holder goes, the property goes, and the mapper sets the board back to its declared
  ``samplingRate``, the one its Flavor states.
- **Reported**: the mapper writes the rate to the board and reports what the board answered as
  the twin ``samplingRate.<group>`` of the Device's DeviceStatus.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fluidos_sensors.flavor import SENSORS_PREFIX, FlavorError, sensor_from_flavor, stable_name
from fluidos_sensors.sensor import SensorSpec
from fluidos_sensors.units import QuantityError, format_number, parse_rate_hz, show

SENSOR_CONFIGURATION_TYPE = "Sensor"  # FLUIDOS names a configuration by its flavor type
RATE_KEY = "samplingRate"
RATE_FIELD = f"configuration.data.{RATE_KEY}"
RATE_PROPERTY_PREFIX = f"{RATE_KEY}."
# On Transactions and Contracts that hold a rate: which rate group of which Device they hold it
# in (a label, so the gateway finds every holder of a group with one list call).
RATE_SCOPE_LABEL = f"{SENSORS_PREFIX}/rate-scope"


class RateError(ValueError):
    """A rate cannot be asked or granted as given; ``field`` names where it was asked."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field} {message}")


def describe_rate(rate_hz: float) -> str:
    return f"{format_number(rate_hz)} Hz"


def describe_rates(rates_hz: Sequence[float]) -> str:
    return ", ".join(format_number(rate) for rate in rates_hz) + " Hz"


def same_rate(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# ------------------------------------------------------------------------------- asked


def rate_configuration(rate_hz: float) -> dict[str, Any]:
    """The FLUIDOS reservation ``configuration`` that asks for `rate_hz`."""
    return {"type": SENSOR_CONFIGURATION_TYPE, "data": {RATE_KEY: format_number(float(rate_hz))}}


def requested_rate(configuration: Mapping[str, Any] | None) -> float | None:
    """The rate a reservation's ``configuration`` asks for (Hz); None when it asks for none.

    Raises RateError naming the field for anything a sensor reservation cannot mean.
    """
    if not configuration:
        return None
    kind = configuration.get("type")
    if kind != SENSOR_CONFIGURATION_TYPE:
        raise RateError(
            "configuration.type", f'must be "{SENSOR_CONFIGURATION_TYPE}", got {show(kind)}'
        )
    data = configuration.get("data")
    if not isinstance(data, Mapping):
        raise RateError("configuration.data", f"must be an object, got {show(data)}")
    unknown = sorted(str(key) for key in data if key != RATE_KEY)
    if unknown:
        raise RateError(
            "configuration.data",
            f"has unknown key(s) {', '.join(unknown)}; a sensor takes only {RATE_KEY}",
        )
    if RATE_KEY not in data:
        return None
    try:
        rate = parse_rate_hz(data[RATE_KEY])
    except QuantityError as exc:
        raise RateError(RATE_FIELD, str(exc)) from None
    if not rate > 0:
        raise RateError(RATE_FIELD, f"must be above 0 Hz, got {show(data[RATE_KEY])}")
    return rate


# ------------------------------------------------------------------------------- offered


def rate_group(sensor: SensorSpec) -> str:
    """The rate group a sensor belongs to on its Device."""
    return sensor.rate_group or sensor.key


def offer_problem(sensor: SensorSpec, rate_hz: float) -> str | None:
    """Why the sensor cannot run at `rate_hz` (None: it can)."""
    if not sensor.sampling_rates_hz:
        fixed = f" ({describe_rate(sensor.sampling_rate_hz)})" if sensor.sampling_rate_hz else ""
        return f"runs at a fixed rate{fixed}; its rate cannot be set"
    if any(same_rate(rate_hz, offered) for offered in sensor.sampling_rates_hz):
        return None
    return f"runs at {describe_rates(sensor.sampling_rates_hz)} only, not {describe_rate(rate_hz)}"


def rate_scope(device: str, group: str) -> str:
    """The RATE_SCOPE_LABEL value of a rate group of a Device ("namespace/name")."""
    name = device.split("/", 1)[-1]
    return stable_name(f"{name}-{group}", f"{device}/{group}")


# ------------------------------------------------------------------------------- carried


def rate_property(group: str) -> str:
    """The Device property whose desired value is a rate group's rate."""
    return f"{RATE_PROPERTY_PREFIX}{group}"


def property_group(name: object) -> str | None:
    """The rate group a Device property is the rate of; None for other properties."""
    if isinstance(name, str) and name.startswith(RATE_PROPERTY_PREFIX):
        return name[len(RATE_PROPERTY_PREFIX) :] or None
    return None


def desired_rates(device: Mapping[str, Any]) -> dict[str, float]:
    """Rate group -> desired rate (Hz), from a Device's ``spec.properties``; unreadable values
    are left out (the mapper warns about them)."""
    rates: dict[str, float] = {}
    for prop in (device.get("spec") or {}).get("properties") or []:
        if not isinstance(prop, Mapping):
            continue
        group = property_group(prop.get("name"))
        desired = prop.get("desired")
        if group is None or not isinstance(desired, Mapping):
            continue
        try:
            rate = parse_rate_hz(desired.get("value"))
        except QuantityError:
            continue
        if rate > 0:
            rates[group] = rate
    return rates


def with_desired_rate(
    properties: Sequence[Mapping[str, Any]],
    group: str,
    rate_hz: float | None,
    metadata: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """A Device's ``spec.properties`` with `group`'s desired rate set (None: removed)."""
    name = rate_property(group)
    kept = [
        dict(prop)
        for prop in properties
        if not (isinstance(prop, Mapping) and prop.get("name") == name)
    ]
    if rate_hz is not None:
        desired: dict[str, Any] = {"value": format_number(float(rate_hz))}
        if metadata:
            desired["metadata"] = dict(metadata)
        kept.append({"name": name, "desired": desired})
    return kept


@dataclass(frozen=True)
class HeldRate:
    """The rate a Contract holds, and where: a rate group of a Device."""

    device: str  # "namespace/name"
    group: str
    rate_hz: float


def held_rate(contract: Mapping[str, Any]) -> HeldRate | None:
    """The rate a Contract (made by the gateway) holds; None when it holds none.

    Raises RateError naming the field when it asks for one that cannot be read.
    """
    spec = contract.get("spec") or {}
    rate = requested_rate(spec.get("configuration"))
    if rate is None:
        return None
    try:
        flavor = sensor_from_flavor(spec.get("flavor"))
    except FlavorError as exc:
        raise RateError("spec.flavor", str(exc)) from None
    if not flavor.device:
        raise RateError("spec.flavor", "names no Device (annotation missing)")
    return HeldRate(flavor.device, rate_group(flavor.sensor), rate)
