"""Sensor flavor filters in the REAR gateway's deepObject query form, and matching.

``filter[sensor_type][match]=humidity&filter[latency][range][max]=16`` selects humidity
sensors with a declared latency of at most 16 ms. Every filter must hold (AND); match
filters compare case-insensitively (``sensor_type`` matches any of a sensor's types); range
bounds are inclusive. Numbers are in ms (latency, observed_latency), Hz (sampling_rate),
mW (consumption; "5 mA" selects current-rated sensors) or the quantity's own unit (accuracy),
and may carry a unit ("0.1 s", "1 kHz"). A sensor that does not declare a number never
satisfies a filter on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import parse_qsl

from fluidos_sensors.flavor import SensorFlavor
from fluidos_sensors.limits import TEXT_MAX_LENGTH, as_float, clip
from fluidos_sensors.units import (
    CURRENT_UNIT,
    QuantityError,
    format_number,
    parse_consumption,
    parse_latency_ms,
    parse_plain_number,
    parse_rate_hz,
    show,
)

MATCH_FILTERS = (
    "sensor_type",
    "sensor_model",
    "sensor_manufacturer",
    "sensor_category",
    "sensor_market",
    "node",
)
RANGE_FILTERS = ("sampling_rate", "latency", "accuracy", "consumption", "observed_latency")
FILTER_NAMES = MATCH_FILTERS + RANGE_FILTERS


@dataclass(frozen=True)
class FilterWord:
    """A filter as people type it: one word for the CLI options and the TUI filter."""

    word: str  # --type / type=..., --max-latency / latency<=...
    name: str  # the REAR query name (FILTER_NAMES): filter[<name>]...
    what: str  # for help texts


# One vocabulary for every command and the TUI (issue 20.3): `--<word>` for text matches,
# `--min-<word>` / `--max-<word>` for bounds, `<word>=`, `<word><=`, `<word>>=` in the TUI.
FILTER_WORDS = (
    FilterWord("type", "sensor_type", "measured quantity, e.g. humidity"),
    FilterWord("model", "sensor_model", "sensor model, e.g. HTS221"),
    FilterWord("manufacturer", "sensor_manufacturer", "manufacturer, e.g. STMicroelectronics"),
    FilterWord("category", "sensor_category", "sensor category, e.g. Environmental"),
    FilterWord("market", "sensor_market", "market, e.g. industrial"),
    FilterWord("node", "node", "the provider's edge node"),
    FilterWord("rate", "sampling_rate", "sampling rate, Hz or with a unit: 10, '1 kHz'"),
    FilterWord("latency", "latency", "declared latency, ms or with a unit: 16, '0.1 s'"),
    FilterWord("accuracy", "accuracy", "± of the quantity (accuracy), in its unit: 0.5"),
    FilterWord("consumption", "consumption", "consumption, mW (or mA for a current): '5 mW'"),
    FilterWord("observed-latency", "observed_latency", "latency measured on the data path, ms: 50"),
)
# Spellings `flavors list` had before, accepted (hidden from --help) for one more release.
LEGACY_OPTIONS = {
    "--latency-max": ("latency", "max"),
    "--sampling-rate-min": ("sampling_rate", "min"),
    "--accuracy-max": ("accuracy", "max"),
}
BOUNDS = ("min", "max")


def filter_options() -> list[tuple[str, str, str]]:
    """Every filter option: (option, filter name, "match" | "min" | "max"), in help order."""
    options: list[tuple[str, str, str]] = []
    for item in FILTER_WORDS:
        if item.name in MATCH_FILTERS:
            options.append((f"--{item.word}", item.name, "match"))
        else:
            options.extend((f"--{bound}-{item.word}", item.name, bound) for bound in BOUNDS)
    return options


_FORMS = {"match": "[match]", "min": "[range][min]", "max": "[range][max]"}


@dataclass(frozen=True)
class FilterOptions:
    """Filter options as given on a command line: (option, filter name, form, text) each."""

    given: tuple[tuple[str, str, str, str], ...] = ()

    def sensor_filter(self) -> SensorFilter:
        """The filter they express; FilterError names the option that is wrong."""
        builder = _Builder()
        for option, name, form, text in self.given:
            builder.add(name, _FORMS[form], text, option)
        return builder.build()

    def request_filter(self) -> dict[str, Any]:
        """A SensorRequest's ``spec.filter``, keeping the texts as typed ("16ms");
        FilterError names the option that is wrong."""
        self.sensor_filter()
        spec: dict[str, Any] = {}
        for _, name, form, text in self.given:
            key = REQUEST_FILTER_FIELDS[name]
            if form == "match":
                spec.setdefault(key, []).append(text.strip())
            else:
                spec.setdefault(key, {})[form] = text.strip()
        return spec

    def texts(self, name: str) -> list[str]:
        """The texts given for one match filter, e.g. the types asked for."""
        return [text for _, given, _, text in self.given if given == name]


NO_FILTERS = FilterOptions()  # a command's `filters` default; @with_filter_options fills it

_KEY = re.compile(r"^filter\[(?P<name>[^\[\]]*)\](?P<rest>(?:\[[^\[\]]*\])*)$")
_EXACT_FORMS = ("", "[exact]", "[match]")  # FLUIDOS encodes a quantity's equality as [match]


class FilterError(ValueError):
    """A filter cannot be understood; the message names the offending parameter."""


@dataclass(frozen=True)
class NumberRange:
    """Inclusive bounds and/or an exact value, in the filter's canonical unit."""

    min: float | None = None
    max: float | None = None
    exact: float | None = None
    unit: str = ""  # consumption only: "mW" or "mA"

    @property
    def is_set(self) -> bool:
        return self.min is not None or self.max is not None or self.exact is not None

    def contains(self, value: float) -> bool:
        if self.min is not None and value < self.min:
            return False
        if self.max is not None and value > self.max:
            return False
        return self.exact is None or math.isclose(value, self.exact, rel_tol=1e-9, abs_tol=1e-12)

    def admits(self, value: float | None) -> bool:
        """No bounds admit anything; bounds never admit an unknown value."""
        return not self.is_set or (value is not None and self.contains(value))


@dataclass(frozen=True, kw_only=True)
class SensorFilter:
    """All conditions a Sensor flavor must meet (an empty filter matches every sensor)."""

    sensor_type: tuple[str, ...] = ()
    sensor_model: tuple[str, ...] = ()
    sensor_manufacturer: tuple[str, ...] = ()
    sensor_category: tuple[str, ...] = ()
    sensor_market: tuple[str, ...] = ()
    node: tuple[str, ...] = ()
    sampling_rate: NumberRange = field(default_factory=NumberRange)
    latency: NumberRange = field(default_factory=NumberRange)
    accuracy: NumberRange = field(default_factory=NumberRange)
    consumption: NumberRange = field(default_factory=NumberRange)
    observed_latency: NumberRange = field(default_factory=NumberRange)

    @property
    def is_empty(self) -> bool:
        return not any(
            getattr(self, name) if name in MATCH_FILTERS else getattr(self, name).is_set
            for name in FILTER_NAMES
        )

    @classmethod
    def from_query(
        cls, params: Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]
    ) -> SensorFilter:
        """From query parameters (a mapping, or pairs); parameters not named filter[...] are
        ignored. Raises FilterError for an unknown filter, operator or a non-numeric value."""
        pairs: Iterable[tuple[str, str]]
        if isinstance(params, Mapping):
            pairs = [
                (key, value)
                for key, values in params.items()
                for value in (
                    values
                    if isinstance(values, Iterable) and not isinstance(values, str)
                    else [values]
                )
            ]
        else:
            pairs = params
        builder = _Builder()
        for pair in pairs:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise FilterError(f"query parameters must be (name, value) pairs, got {show(pair)}")
            key, value = pair
            if not isinstance(key, str):
                raise FilterError(f"query parameter names must be text, got {show(key)}")
            if not key.startswith("filter"):
                continue
            match = _KEY.match(key)
            if not match:
                raise FilterError(
                    f'"{clip(key)}" is not a filter: use filter[<name>][match]=..., '
                    "filter[<name>][range][min|max]=... or filter[<name>]=..."
                )
            builder.add(match["name"], match["rest"], value, key)
        return builder.build()

    @classmethod
    def from_query_string(cls, query: str) -> SensorFilter:
        """From a URL query string such as ``filter[latency][range][max]=16&...``."""
        return cls.from_query(parse_qsl(query.lstrip("?"), keep_blank_values=True))

    @classmethod
    def from_options(
        cls,
        *,
        sensor_type: str | Sequence[str] | None = None,
        sensor_model: str | Sequence[str] | None = None,
        sensor_manufacturer: str | Sequence[str] | None = None,
        sensor_category: str | Sequence[str] | None = None,
        sensor_market: str | Sequence[str] | None = None,
        node: str | Sequence[str] | None = None,
        sampling_rate: float | str | None = None,
        sampling_rate_min: float | str | None = None,
        sampling_rate_max: float | str | None = None,
        latency: float | str | None = None,
        latency_min: float | str | None = None,
        latency_max: float | str | None = None,
        accuracy: float | str | None = None,
        accuracy_min: float | str | None = None,
        accuracy_max: float | str | None = None,
        consumption: float | str | None = None,
        consumption_min: float | str | None = None,
        consumption_max: float | str | None = None,
        observed_latency: float | str | None = None,
        observed_latency_min: float | str | None = None,
        observed_latency_max: float | str | None = None,
    ) -> SensorFilter:
        """From CLI options (``--latency-max 16``); None means "no condition"."""
        given = dict(locals())
        builder = _Builder()
        for name in MATCH_FILTERS:
            values = given[name]
            option = f"--{name.replace('_', '-')}"
            if values is not None and not isinstance(values, str | Iterable):
                raise FilterError(f'"{option}" must be text, got {show(values)}')
            for value in [values] if isinstance(values, str) else values or ():
                builder.add(name, "[match]", value, option)
        for name in RANGE_FILTERS:
            for suffix, form in (
                ("", "[exact]"),
                ("_min", "[range][min]"),
                ("_max", "[range][max]"),
            ):
                value = given[f"{name}{suffix}"]
                if value is not None:
                    option = f"--{name.replace('_', '-')}{suffix.replace('_', '-')}"
                    builder.add(name, form, _option_text(value, option), option)
        return builder.build()

    @classmethod
    def from_request_spec(cls, spec_filter: Mapping[str, Any] | None) -> SensorFilter:
        """From a SensorRequest's ``spec.filter`` (``REQUEST_FILTER_FIELDS``: lists of strings
        to match, ``{min, max, exact}`` bounds); FilterError names the field."""
        if spec_filter is None:
            return cls()
        if not isinstance(spec_filter, Mapping):
            raise FilterError(f"spec.filter must be an object, got {show(spec_filter)}")
        names = {field_name: name for name, field_name in REQUEST_FILTER_FIELDS.items()}
        builder = _Builder()
        for key, value in spec_filter.items():
            name = names.get(key) if isinstance(key, str) else None
            where = f"spec.filter.{clip(str(key))}"
            if name is None:
                raise FilterError(f"{where} is not a filter; known: {', '.join(names)}")
            if value is None:
                continue
            if name in MATCH_FILTERS:
                if not isinstance(value, list | tuple):
                    raise FilterError(f"{where} must be a list of strings, got {show(value)}")
                for index, item in enumerate(value):
                    builder.add(name, "[match]", item, f"{where}[{index}]")
            elif not isinstance(value, Mapping) or not set(value) <= set(_REQUEST_BOUNDS):
                raise FilterError(
                    f"{where} must be an object with min, max and/or exact, got {show(value)}"
                )
            else:
                for bound, item in value.items():
                    if item is not None:
                        at = f"{where}.{bound}"
                        builder.add(name, _REQUEST_BOUNDS[bound], _option_text(item, at), at)
        return builder.build()

    def to_query(self) -> list[tuple[str, str]]:
        """The REAR deepObject query parameters expressing this filter."""
        pairs: list[tuple[str, str]] = []
        for name in MATCH_FILTERS:
            pairs.extend((f"filter[{name}][match]", value) for value in getattr(self, name))
        for name in RANGE_FILTERS:
            bounds: NumberRange = getattr(self, name)
            # Bare numbers are in the canonical unit; only a current bound needs its unit.
            suffix = f" {CURRENT_UNIT}" if bounds.unit == CURRENT_UNIT else ""
            for form, value in (
                ("[exact]", bounds.exact),
                ("[range][min]", bounds.min),
                ("[range][max]", bounds.max),
            ):
                if value is not None:
                    pairs.append((f"filter[{name}]{form}", f"{format_number(value)}{suffix}"))
        return pairs

    def matches(self, flavor: SensorFlavor) -> bool:
        return matches(self, flavor)


def matches(sensor_filter: SensorFilter, flavor: SensorFlavor) -> bool:
    """Whether a Sensor flavor meets every condition of the filter."""
    sensor = flavor.sensor
    wanted_types = sensor_filter.sensor_type
    if not all(any(_same(want, kind) for kind in sensor.types) for want in wanted_types):
        return False
    for wanted, actual in (
        (sensor_filter.sensor_model, sensor.model),
        (sensor_filter.sensor_manufacturer, sensor.manufacturer),
        (sensor_filter.sensor_category, sensor.category),
        (sensor_filter.sensor_market, sensor.market),
        (sensor_filter.node, flavor.node),
    ):
        if not all(_same(want, actual) for want in wanted):
            return False
    if not sensor_filter.sampling_rate.admits(sensor.sampling_rate_hz):
        return False
    if not sensor_filter.latency.admits(sensor.latency_ms):
        return False
    if not sensor_filter.observed_latency.admits(flavor.observed_latency_ms):
        return False
    consumption = sensor_filter.consumption
    if consumption.is_set and sensor.units.consumption != consumption.unit:
        return False  # a power bound says nothing about a current rating, and vice versa
    if not consumption.admits(sensor.consumption):
        return False
    if sensor_filter.accuracy.is_set:
        # With a type filter, only the accuracy of the wanted quantities counts.
        candidates = [
            item.value
            for item in sensor.accuracy
            if not wanted_types or any(_same(want, item.quantity) for want in wanted_types)
        ]
        if not any(sensor_filter.accuracy.contains(value) for value in candidates):
            return False
    return True


def _same(wanted: str, actual: str) -> bool:
    return wanted.strip().casefold() == actual.strip().casefold()


class _Builder:
    """Collects (name, operator, value) conditions and checks them once."""

    def __init__(self) -> None:
        self.texts: dict[str, list[str]] = {name: [] for name in MATCH_FILTERS}
        # name -> bound -> (number, unit, text, where it was given)
        self.bounds: dict[str, dict[str, tuple[float, str, str, str]]] = {
            name: {} for name in RANGE_FILTERS
        }

    def add(self, name: str, form: str, value: object, where: str) -> None:
        where = clip(where)
        if name not in FILTER_NAMES:
            raise FilterError(
                f'unknown filter "{clip(name)}" in "{where}"; '
                f"known filters: {', '.join(FILTER_NAMES)}"
            )
        if not isinstance(value, str):
            raise FilterError(f'"{where}" must be text, got {show(value)}')
        value = value.strip()
        if not value:
            raise FilterError(f'"{where}" must not be empty')
        # No sensor field is longer, so a longer value could never match anything.
        if len(value) > TEXT_MAX_LENGTH:
            raise FilterError(
                f'"{where}" is {len(value)} characters long; at most {TEXT_MAX_LENGTH}'
            )
        if name in MATCH_FILTERS:
            if form not in ("", "[match]"):
                raise FilterError(
                    f'"{where}": {name} is matched by text; use filter[{name}][match]=...'
                )
            self.texts[name].append(value)
            return
        if form in _EXACT_FORMS:
            bound = "exact"
        elif form in ("[range][min]", "[range][max]"):
            bound = form[len("[range][") : -1]
        else:
            raise FilterError(
                f'"{where}": {name} takes a number: filter[{name}]=N, filter[{name}][exact]=N, '
                f"filter[{name}][range][min]=N or filter[{name}][range][max]=N"
            )
        number, unit = _number(name, value, where)
        seen = self.bounds[name].get(bound)
        if seen is not None and (seen[0], seen[1]) != (number, unit):
            raise FilterError(
                f'"{where}" is given twice with different values ({clip(seen[2])}, {clip(value)})'
                if seen[3] == where
                else f'"{seen[3]}" and "{where}" give different values '
                f"({clip(seen[2])}, {clip(value)})"
            )
        self.bounds[name][bound] = (number, unit, value, where)

    def build(self) -> SensorFilter:
        # Field names come from the query, so their types are checked at run time, not here.
        texts: dict[str, Any] = {name: tuple(values) for name, values in self.texts.items()}
        result = SensorFilter(**texts)
        for name, bounds in self.bounds.items():
            if not bounds:
                continue
            units = {unit for _, unit, _, _ in bounds.values()}
            if len(units) > 1:
                raise FilterError(
                    f"filter[{name}] mixes units ({', '.join(sorted(units))}); "
                    "compare power with power and current with current"
                )
            low, high = bounds.get("min"), bounds.get("max")
            if low is not None and high is not None and low[0] > high[0]:
                raise FilterError(
                    f"filter[{name}][range]: min {clip(low[2])} is greater than max {clip(high[2])}"
                )
            number_range = NumberRange(
                min=low[0] if low else None,
                max=high[0] if high else None,
                exact=bounds["exact"][0] if "exact" in bounds else None,
                unit=units.pop(),
            )
            ranged: dict[str, Any] = {name: number_range}
            result = replace(result, **ranged)
        return result


def _option_text(value: object, option: str) -> str:
    """A CLI option's number as the text filters parse (numbers pass through exactly)."""
    if isinstance(value, str):
        return value
    number = as_float(value)
    if number is None:
        raise FilterError(f'"{option}" must be a finite number, got {show(value)}')
    return format_number(number)


def _number(name: str, value: str, where: str) -> tuple[float, str]:
    try:
        if name == "sampling_rate":
            return parse_rate_hz(value), "Hz"
        if name in ("latency", "observed_latency"):
            return parse_latency_ms(value), "ms"
        if name == "consumption":
            return parse_consumption(value)
        return parse_plain_number(value, "a number"), ""
    except QuantityError as err:
        raise FilterError(f'"{where}" {err}') from None


def describe(sensor_filter: SensorFilter) -> str:
    """A short human description of a filter, for logs and the TUI."""
    parts: list[str] = []
    for item in fields(sensor_filter):
        value: Any = getattr(sensor_filter, item.name)
        if isinstance(value, tuple) and value:
            parts.append(f"{item.name}={'+'.join(value)}")
        elif isinstance(value, NumberRange) and value.is_set:
            unit = value.unit
            if value.exact is not None:
                parts.append(f"{item.name}={format_number(value.exact)}{unit}")
            if value.min is not None:
                parts.append(f"{item.name}>={format_number(value.min)}{unit}")
            if value.max is not None:
                parts.append(f"{item.name}<={format_number(value.max)}{unit}")
    return ", ".join(parts) or "any sensor"


# A SensorRequest (chart files/crds/sensorrequests.yaml) carries the same filters in `spec.filter`,
# camelCased: text lists for match filters, {min, max, exact} strings for range filters.
REQUEST_FILTER_FIELDS = {
    name: name.split("_")[0] + "".join(part.title() for part in name.split("_")[1:])
    for name in FILTER_NAMES
}
_REQUEST_BOUNDS = {"min": "[range][min]", "max": "[range][max]", "exact": "[exact]"}


def to_request_filter(sensor_filter: SensorFilter) -> dict[str, Any]:
    """The `spec.filter` of a SensorRequest that expresses this filter."""
    body: dict[str, Any] = {}
    for name in MATCH_FILTERS:
        if values := getattr(sensor_filter, name):
            body[REQUEST_FILTER_FIELDS[name]] = list(values)
    for name in RANGE_FILTERS:
        bounds: NumberRange = getattr(sensor_filter, name)
        suffix = f" {CURRENT_UNIT}" if bounds.unit == CURRENT_UNIT else ""
        given = {
            key: f"{format_number(value)}{suffix}"
            for key, value in (("min", bounds.min), ("max", bounds.max), ("exact", bounds.exact))
            if value is not None
        }
        if given:
            body[REQUEST_FILTER_FIELDS[name]] = given
    return body


def from_request_filter(spec_filter: Mapping[str, Any] | None, where: str) -> SensorFilter:
    """A SensorRequest's `spec.filter` as a SensorFilter; errors name `where` and the field."""
    try:
        return SensorFilter.from_request_spec(spec_filter)
    except FilterError as exc:
        raise FilterError(f"{where}: {exc}") from None
