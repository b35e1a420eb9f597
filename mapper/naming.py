"""How BlueST features are named in topics, readings and twins."""

from __future__ import annotations

from functools import cache

from fluidos_sensors.sensor import sensor_key

# Features that measure the same quantity as another one (a second temperature sensor).
_QUANTITY = {"temperature2": "temperature"}


@cache
def sensor_segment(feature_sensor: str) -> str:
    """The sensor's name in topics, readings and twins: `sensor_key` of the BlueST key, the
    same key the resource manager derives from a `sensors` annotation entry of that name."""
    return sensor_key(feature_sensor)


def quantity_of(feature_sensor: str) -> str:
    """The physical quantity a BlueST feature measures."""
    return _QUANTITY.get(feature_sensor, feature_sensor)
