"""When the first reading of a request's contracts reached the consumer's InfluxDB.

The provider's gateway does not tell when data starts flowing, and a consumer endpoint in
general cannot be asked. When the operator is given the consumer's InfluxDB (where its
Telegraf writes), it looks there for the first point of each purchased sensor: readings carry
the tags `device` and `sensor` (`router_manager.encoding`), and their time is the mapper's
receive time on the provider's clock, like the contract's start time it is compared with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from influxdb_client import InfluxDBClient

from consumer.plan import HeldContract

log = logging.getLogger("consumer.firstdata")

_QUERY_TIMEOUT_MS = 10_000


@dataclass(frozen=True, kw_only=True)
class InfluxSettings:
    """The consumer's InfluxDB (v2 API; InfluxDB 1.8 takes "user:password" as token)."""

    url: str
    token: str = field(repr=False)
    bucket: str
    org: str = "-"


def _flux_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{escaped}"'


def _flux_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 time ("Z" or an offset), or None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as the status shows times."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def first_data_query(bucket: str, contracts: Sequence[HeldContract]) -> str | None:
    """The Flux query for the earliest point of any contract's sensor since it was bought.

    "Since": the later of the contract's start (whole seconds) and the operator's own time of
    the purchase (milliseconds), so readings the same endpoint got from an earlier contract on
    the same sensor a moment before do not count. None when no contract names its device and
    sensor (nothing to look for).
    """
    conditions = []
    starts = []
    for contract in contracts:
        known = [t for t in (parse_time(contract.since), parse_time(contract.bought)) if t]
        if not contract.device or not contract.sensor or not known:
            continue
        start = max(known)
        starts.append(start)
        conditions.append(
            f"(r.device == {_flux_string(contract.device)}"
            f" and r.sensor == {_flux_string(contract.sensor)}"
            f' and r._time >= time(v: "{_flux_time(start)}"))'
        )
    if not conditions:
        return None
    return (
        f"from(bucket: {_flux_string(bucket)})"
        f' |> range(start: time(v: "{_flux_time(min(starts))}"))'
        f" |> filter(fn: (r) => {' or '.join(conditions)})"
        " |> first()"
        ' |> keep(columns: ["_time"])'
        " |> group()"
        ' |> sort(columns: ["_time"])'
        " |> limit(n: 1)"
    )


class FirstDataProbe:
    """Asks the consumer's InfluxDB for the first reading of a set of contracts."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings

    def _query(self, flux: str) -> datetime | None:
        with InfluxDBClient(
            url=self.settings.url,
            token=self.settings.token,
            org=self.settings.org,
            timeout=_QUERY_TIMEOUT_MS,
        ) as influx:
            tables = influx.query_api().query(flux)
        times = [
            record.get_time() for table in tables for record in table.records if record.get_time()
        ]
        return min(times) if times else None

    async def first_reading(self, contracts: Sequence[HeldContract]) -> datetime | None:
        """The time of the first reading of any of the contracts, if one arrived."""
        flux = first_data_query(self.settings.bucket, contracts)
        if flux is None:
            return None
        try:
            return await asyncio.to_thread(self._query, flux)
        except Exception as exc:  # the consumer's database being down must not stop the operator
            log.warning("InfluxDB at %s did not answer: %s", self.settings.url, type(exc).__name__)
            return None
