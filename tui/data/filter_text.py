"""The flavor filter typed in the TUI: short `name<=value` words or the REAR query form.

``type=humidity manufacturer=STMicroelectronics latency<=16`` is the same filter as
``flavors list --type humidity --manufacturer STMicroelectronics --max-latency 16`` (the same
words: `fluidos_sensors.filters.FILTER_WORDS`) and as
``filter[sensor_type][match]=humidity&filter[latency][range][max]=16``: every word becomes a
REAR query parameter and `fluidos_sensors.filters.SensorFilter` does the matching, so the
TUI, the CLI and the gateway agree. Two facets are the TUI's own, applied beside the sensor
filter: ``available=yes|no`` and ``cluster=NAME``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from fluidos_sensors.filters import (
    FILTER_NAMES,
    FILTER_WORDS,
    MATCH_FILTERS,
    FilterError,
    SensorFilter,
    describe,
)
from tui.data.rows.flavor import FlavorRow

# The words the CLI options use (`--type`, `--max-rate`: type=, rate<=), beside the REAR filter
# names themselves; dashes read as underscores.
ALIASES = {
    **{
        item.word.replace("-", "_"): item.name
        for item in FILTER_WORDS
        if item.word.replace("-", "_") != item.name
    },
    "obs_latency": "observed_latency",
}
FACETS = ("available", "cluster")
_WORD = re.compile(r"^(?P<name>[A-Za-z_-]+)\s*(?P<op><=|>=|=|<|>|:)\s*(?P<value>.*)$")
_YES, _NO = ("yes", "true", "1", "y"), ("no", "false", "0", "n")


@dataclass(frozen=True)
class FlavorQuery:
    """A sensor filter plus the TUI's own facets; empty matches every flavor."""

    sensor_filter: SensorFilter = field(default_factory=SensorFilter)
    available: bool | None = None
    clusters: tuple[str, ...] = ()
    text: str = ""

    @property
    def is_empty(self) -> bool:
        return self.sensor_filter.is_empty and self.available is None and not self.clusters

    def matches(self, row: FlavorRow) -> bool:
        """Whether a table row passes; an unusable Flavor passes only the empty query."""
        if self.is_empty:
            return True
        if row.flavor is None:
            return False
        if self.clusters and row.key[0].casefold() not in {c.casefold() for c in self.clusters}:
            return False
        if self.available is not None and row.flavor.availability != self.available:
            return False
        return self.sensor_filter.matches(row.flavor)

    def describe(self) -> str:
        parts = [] if self.sensor_filter.is_empty else [describe(self.sensor_filter)]
        if self.available is not None:
            parts.append(f"available={'yes' if self.available else 'no'}")
        if self.clusters:
            parts.append(f"cluster={'+'.join(self.clusters)}")
        return ", ".join(parts) or "every flavor"


def filter_name(name: str) -> str | None:
    """The filter a typed name means (case and dashes ignored), or None."""
    folded = name.strip().lower().replace("-", "_")
    folded = ALIASES.get(folded, folded)
    return folded if folded in FILTER_NAMES else None


def _pairs(word: str) -> list[tuple[str, str]]:
    """The REAR query parameters one typed word stands for."""
    if word.lstrip("?").startswith("filter["):
        return parse_qsl(word.lstrip("?"), keep_blank_values=True)
    match = _WORD.match(word)
    if not match:
        raise FilterError(
            "use name=value, name<=number or name>=number (or filter[...]=... query parameters)"
        )
    typed, op, value = match["name"], match["op"], match["value"]
    name = filter_name(typed)
    if name is None:
        known = ", ".join(sorted({*ALIASES, *FILTER_NAMES, *FACETS}))
        raise FilterError(f'unknown filter "{typed}"; known: {known}')
    if op in ("<", ">"):
        raise FilterError(f"bounds are inclusive: use {op}= instead of {op}")
    if name in MATCH_FILTERS:
        if op not in ("=", ":"):
            raise FilterError(f"{name} is matched by text: use {typed}=...")
        return [(f"filter[{name}][match]", v) for v in value.split(",")]
    form = {"<=": "[range][max]", ">=": "[range][min]"}.get(op, "[exact]")
    return [(f"filter[{name}]{form}", value)]


def parse_flavor_query(text: str) -> FlavorQuery:
    """A typed filter; raises FilterError naming the word that is wrong."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise FilterError(f"filter: {exc}") from None
    pairs: list[tuple[str, str]] = []
    available: bool | None = None
    clusters: list[str] = []
    for word in _split_queries(words):
        facet = _WORD.match(word)
        if facet and facet["name"].lower() in FACETS and facet["op"] in ("=", ":"):
            value = facet["value"].strip()
            if facet["name"].lower() == "cluster":
                clusters.extend(v for v in value.split(",") if v)
            elif value.lower() in _YES + _NO:
                available = value.lower() in _YES
            else:
                raise FilterError(f'"{word}": available is yes or no')
            continue
        try:
            word_pairs = _pairs(word)
            SensorFilter.from_query(word_pairs)  # checks the word alone, to name it
        except FilterError as exc:
            raise FilterError(f'"{word}": {exc}') from None
        pairs.extend(word_pairs)
    try:
        sensor_filter = SensorFilter.from_query(pairs)
    except FilterError as exc:  # only conflicts between words get here
        raise FilterError(f"filter: {exc}") from None
    return FlavorQuery(sensor_filter, available, tuple(clusters), text.strip())


def _split_queries(words: Iterable[str]) -> Iterable[str]:
    # A pasted REAR query joins its parameters with "&"; each is a word of its own.
    for word in words:
        if "&" in word and word.lstrip("?").startswith("filter["):
            yield from (part for part in word.lstrip("?").split("&") if part)
        else:
            yield word
