"""A node's simulated boards (`mapper run --simulate N`) and the Devices that describe them.

Boards alternate STWIN.box and SensorTile; MACs, seeds and names derive from the node name,
so a restarted mapper finds the same boards under the same Devices.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from fluidos_sensors.flavor import SENSORS_PREFIX
from fluidos_sensors.sensor import AccessResource, Accuracy, SensorAccess, SensorSpec, SensorUnits
from fluidos_sensors.topics import source_topic
from mapper.bluest import FEATURES_BY_MASK
from mapper.dataplane.twins import DeviceKey
from mapper.devices import device_body
from mapper.naming import quantity_of, sensor_segment
from mapper.simulator import SimulatedBoard, offered_rates, sensortile, stwin_box

SIMULATED_LABEL = f"{SENSORS_PREFIX}/simulated"
MANUFACTURER = "STMicroelectronics"
MARKET = "industrial"
LINK_LATENCY_MS = (10.0, 15.0, 20.0, 22.0)
"""What a reading of board 1, 2, 3, 4 (then again) waits on BLE: about one connection
interval, which differs with each board's link parameters. Distinct on purpose: with the
boards alternating STWIN.box and SensorTile, the two HTS221 humidity sensors (boards 2
and 4) declare 15 and 22 ms, so "latency < 16 ms" and "< 25 ms" select different sets."""
_INERTIAL = {"acceleration", "angular_velocity", "magnetic_field"}
_MODELS = (("stwin-box", stwin_box), ("sensortile", sensortile))
_NAME_JUNK = re.compile(r"[^a-z0-9-]+")


def board_mac(node: str, index: int) -> str:
    """A stable MAC for board `index` (1-based) of `node`: ST-like prefix, node hash, index."""
    digest = hashlib.sha256(node.encode()).digest()
    octets = (0xC0, 0x8A, digest[0], digest[1], digest[2], index & 0xFF)
    return ":".join(f"{o:02X}" for o in octets)


def device_name(node: str, model: str, index: int) -> str:
    base = _NAME_JUNK.sub("-", node.lower()).strip("-")
    return f"{base}-{model}-{index}"


def simulated_boards(
    node: str,
    count: int,
    *,
    inertial_hz: float = 10.0,
    environmental_hz: float = 1.0,
    battery_hz: float = 1.0,
) -> list[tuple[str, SimulatedBoard]]:
    """`count` boards for `node`, each with the model slug its Device is named after."""
    boards = []
    for index in range(1, count + 1):
        model, factory = _MODELS[(index - 1) % len(_MODELS)]
        mac = board_mac(node, index)
        seed = int.from_bytes(hashlib.sha256(f"{node}/{index}".encode()).digest()[:4], "big")
        board = factory(
            mac,
            inertial_hz=inertial_hz,
            environmental_hz=environmental_hz,
            battery_hz=battery_hz,
            seed=seed,
            tick_offset=seed & 0xFFFF,
        )
        boards.append((model, board))
    return boards


def link_latency_ms(index: int) -> float:
    """The declared latency of board `index` (1-based)."""
    return LINK_LATENCY_MS[(index - 1) % len(LINK_LATENCY_MS)]


def board_sensors(
    board: SimulatedBoard, *, node: str, device: str, latency_ms: float = LINK_LATENCY_MS[0]
) -> list[SensorSpec]:
    """The board's sensors in the FLUIDOS model (battery is not sold: not listed)."""
    rates = {}
    characteristic_of = {}
    for mask, rate in board.characteristics.items():
        for feature in FEATURES_BY_MASK.values():
            if mask & feature.mask:
                rates[feature.mask] = rate
                characteristic_of[feature.mask] = mask
    specs = []
    for sensor in board.sensors:
        feature = FEATURES_BY_MASK[sensor.feature_mask]
        if sensor.feature_mask not in rates:
            continue
        key = sensor_segment(feature.sensor)
        quantity = quantity_of(feature.sensor)
        category = "Inertial" if feature.sensor in _INERTIAL else "Environmental"
        # The sensors one characteristic carries share its rate: one rate group, named by
        # their category (a board has one characteristic of each).
        offered = offered_rates(characteristic_of[sensor.feature_mask]) or ()
        specs.append(
            SensorSpec(
                key=key,
                uid=f"{board.mac.replace(':', '').lower()}-{key}",
                name=feature.sensor,
                model=sensor.part,
                manufacturer=MANUFACTURER,
                market=MARKET,
                category=category,
                types=(quantity,),
                sampling_rate_hz=rates[sensor.feature_mask],
                sampling_rates_hz=offered,
                rate_group=category.lower() if offered else "",
                accuracy=(Accuracy(quantity=quantity, value=sensor.accuracy, unit=feature.unit),),
                latency_ms=latency_ms,
                units=SensorUnits(measurement=(feature.unit,)),
                access=SensorAccess(
                    type="MQTT",
                    source="mapper",
                    resource=AccessResource(topic=source_topic(device, key), node=node),
                ),
            )
        )
    return specs


def simulated_devices(
    node: str,
    namespace: str,
    boards: list[tuple[str, SimulatedBoard]],
    *,
    report_cycle_seconds: float,
) -> list[dict[str, Any]]:
    """The v1beta1 Devices for `boards`, bound to `node`."""
    bodies = []
    for index, (model, board) in enumerate(boards, start=1):
        name = device_name(node, model, index)
        bodies.append(
            device_body(
                DeviceKey(namespace, name),
                node=node,
                mac=board.mac,
                model=model,
                sensors=board_sensors(
                    board, node=node, device=name, latency_ms=link_latency_ms(index)
                ),
                report_cycle_seconds=report_cycle_seconds,
                labels={SIMULATED_LABEL: "true"},
            )
        )
    return bodies
