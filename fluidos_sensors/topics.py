"""The one topic scheme for sensor data on an edge node's MQTT broker.

KubeEdge's eventbus maps a Rule source `{topic: T}` in namespace N to the broker topic
`N/T`; we keep that convention so a KubeEdge router and our edge agent read the same topics.
"""

from __future__ import annotations

import re

# \Z, not $: "$" also matches before a final newline, which a segment must not end with.
_SEGMENT = re.compile(r"[a-z0-9]([-a-z0-9._]*[a-z0-9])?\Z")
TOPIC_ROOT = "fluidos-sensors"


def _check(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _SEGMENT.match(value):
        raise ValueError(
            f"{kind} {value!r} cannot be a topic segment: "
            "use lowercase letters, digits, '-', '.', '_'"
        )
    return value


def source_topic(device: str, sensor: str) -> str:
    """The topic a Rule's eventbus source names (without the namespace prefix)."""
    return f"{TOPIC_ROOT}/{_check('device', device)}/{_check('sensor', sensor)}"


def broker_topic(namespace: str, device: str, sensor: str) -> str:
    """The MQTT topic the mapper publishes a sensor's readings to."""
    return f"{_check('namespace', namespace)}/{source_topic(device, sensor)}"


def split_source_topic(topic: str) -> tuple[str, str] | None:
    """(device, sensor) of a `source_topic`, or None when `topic` is not one (a Flavor's
    ``access.resource.topic``: the device and sensor tags its readings carry)."""
    parts = topic.split("/") if isinstance(topic, str) else []
    if len(parts) != 3 or parts[0] != TOPIC_ROOT:
        return None
    if not all(_SEGMENT.match(part) for part in parts[1:]):
        return None
    return parts[1], parts[2]


def split_broker_topic(topic: str) -> tuple[str, str, str] | None:
    """(namespace, device, sensor) of a `broker_topic`, or None when `topic` is not one."""
    namespace, _, source = topic.partition("/") if isinstance(topic, str) else ("", "", "")
    found = split_source_topic(source) if _SEGMENT.match(namespace) else None
    return None if found is None else (namespace, *found)
