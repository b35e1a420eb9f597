"""Rows of the event log: one Event each, core/v1 or events.k8s.io/v1
(`tui/widgets/event_log.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tui.data.rows.cells import (
    as_number,
    parse_time,
    short_time,
)


def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


@dataclass(frozen=True)
class EventRow:
    """One Event (core/v1 or events.k8s.io/v1) as the log shows it."""

    cluster: str
    uid: str
    time: str
    type: str
    reason: str
    kind: str
    namespace: str
    name: str
    message: str
    count: int = 1
    sort_time: float = field(default=0.0, compare=False)

    @property
    def involved(self) -> str:
        ref = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {ref}"


def event_row(cluster: str, obj: Mapping[str, Any]) -> EventRow:
    meta = _meta(obj)
    # core/v1 and events.k8s.io/v1 name the same facts differently.
    series = obj.get("series") or {}
    when = (
        obj.get("lastTimestamp")
        or obj.get("deprecatedLastTimestamp")
        or series.get("lastObservedTime")
        or obj.get("eventTime")
        or obj.get("firstTimestamp")
        or obj.get("deprecatedFirstTimestamp")
        or meta.get("creationTimestamp")
    )
    parsed = parse_time(when)
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    count = as_number(obj.get("count") or obj.get("deprecatedCount") or series.get("count"))
    return EventRow(
        cluster=cluster,
        uid=str(meta.get("uid") or meta.get("name") or ""),
        time=short_time(when),
        type=str(obj.get("type") or "Normal"),
        reason=str(obj.get("reason") or ""),
        kind=str(involved.get("kind") or ""),
        namespace=str(involved.get("namespace") or ""),
        name=str(involved.get("name") or ""),
        message=str(obj.get("message") or obj.get("note") or "").strip(),
        count=int(count) if count else 1,
        sort_time=parsed.timestamp() if parsed else 0.0,
    )
