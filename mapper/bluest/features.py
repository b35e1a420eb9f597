"""BlueST features: mask bits, GATT UUIDs and what each feature's payload carries.

A feature characteristic's UUID is `XXXXXXXX-0001-11e1-ac36-0002a5d5c51b`, where the
first 32 bits are a mask of the features it carries; a characteristic with several bits
set carries those features in one notification, most significant bit first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fluidos_sensors import twins

# bleak reports UUIDs in lower case; ST's documents spell some hex digits in upper case.
FEATURE_SERVICE_UUID = "00000000-0001-11e1-9ab4-0002a5d5c51b"
CONSOLE_SERVICE_UUID = "00000000-000e-11e1-9ab4-0002a5d5c51b"
CONSOLE_TERMINAL_UUID = "00000001-000e-11e1-ac36-0002a5d5c51b"
"""Console stdin/stdout: commands are written here, answers come back as notifications."""
CONSOLE_STDERR_UUID = "00000002-000e-11e1-ac36-0002a5d5c51b"
CONFIG_SERVICE_UUID = "00000000-000f-11e1-9ab4-0002a5d5c51b"
CONFIG_CHARACTERISTIC_UUID = "00000002-000f-11e1-ac36-0002a5d5c51b"

_FEATURE_CHARACTERISTIC_SUFFIX = "-0001-11e1-ac36-0002a5d5c51b"

TIMESTAMP_LENGTH = 2
"""Every feature notification starts with one little-endian uint16 of 10 ms ticks."""


@dataclass(frozen=True)
class Feature:
    """One BlueST feature: its mask bit, the sensor key it feeds and its payload layout."""

    name: str
    """ST's name for the feature."""
    mask: int
    sensor: str
    """Sensor key used in readings and topics (e.g. "angular_velocity")."""
    unit: str
    """Unit of the main value (battery: of the level)."""
    field_units: Mapping[str, str] = field(hash=False)
    """Every value field the decoder emits, in payload order, with its unit."""
    payload_length: int

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.field_units)


def _units(**units: str) -> Mapping[str, str]:
    return MappingProxyType(dict(units))


def _axes(unit: str) -> Mapping[str, str]:
    return _units(x=unit, y=unit, z=unit)


ACCELEROMETER = Feature("accelerometer", 0x00800000, "acceleration", "mg", _axes("mg"), 6)
GYROSCOPE = Feature("gyroscope", 0x00400000, "angular_velocity", "dps", _axes("dps"), 6)
MAGNETOMETER = Feature("magnetometer", 0x00200000, "magnetic_field", "mGa", _axes("mGa"), 6)
PRESSURE = Feature("pressure", 0x00100000, "pressure", "hPa", _units(value="hPa"), 4)
HUMIDITY = Feature("humidity", 0x00080000, "humidity", "%RH", _units(value="%RH"), 2)
TEMPERATURE = Feature("temperature", 0x00040000, "temperature", "°C", _units(value="°C"), 2)
BATTERY = Feature(
    "battery",
    0x00020000,
    twins.BATTERY,  # the twin the TUI shows as a device's battery
    "%",
    # status is ST's code (see BatteryStatus); current is None when the board does not know it.
    _units(level="%", voltage="mV", current="mA", status=""),
    7,
)
SECOND_TEMPERATURE = Feature(
    "second temperature", 0x00010000, "temperature2", "°C", _units(value="°C"), 2
)

FEATURES: tuple[Feature, ...] = (
    ACCELEROMETER,
    GYROSCOPE,
    MAGNETOMETER,
    PRESSURE,
    HUMIDITY,
    TEMPERATURE,
    BATTERY,
    SECOND_TEMPERATURE,
)
"""Known features, most significant bit first (the order their payloads appear in)."""

FEATURES_BY_MASK: Mapping[int, Feature] = MappingProxyType({f.mask: f for f in FEATURES})
KNOWN_MASK = sum(f.mask for f in FEATURES)


class UnknownFeatureError(ValueError):
    """A characteristic's mask has bits this decoder does not know.

    Their payload lengths are unknown, so nothing after them can be located either.
    """

    def __init__(self, characteristic: str, unknown_bits: int) -> None:
        super().__init__(
            f"{characteristic}: feature bits 0x{unknown_bits:08x} are not known to this decoder"
        )
        self.characteristic = characteristic
        self.unknown_bits = unknown_bits


def feature_characteristic_uuid(mask: int) -> str:
    """The UUID of the feature characteristic carrying the features in `mask`."""
    if not 0 < mask <= 0xFFFFFFFF:
        raise ValueError(f"feature mask must be a non-zero 32-bit value, got 0x{mask:x}")
    return f"{mask:08x}{_FEATURE_CHARACTERISTIC_SUFFIX}"


def feature_mask(uuid: str) -> int | None:
    """The feature mask of a feature characteristic UUID, or None for any other UUID."""
    uuid = uuid.lower()
    if len(uuid) != 36 or not uuid.endswith(_FEATURE_CHARACTERISTIC_SUFFIX):
        return None
    try:
        return int(uuid[:8], 16)
    except ValueError:
        return None


def describe_characteristic(characteristic: str | int) -> str:
    """A name for error messages: the UUID as given, or the mask in hex."""
    if isinstance(characteristic, int):
        return f"feature characteristic 0x{characteristic:08x}"
    return f"feature characteristic {characteristic}"


def mask_of(characteristic: str | int) -> int:
    """The mask of a characteristic given as a UUID or as the mask itself."""
    if isinstance(characteristic, int):
        return characteristic
    mask = feature_mask(characteristic)
    if mask is None:
        raise ValueError(f"{characteristic} is not a BlueST feature characteristic UUID")
    return mask


def unknown_bits(mask: int) -> int:
    """The bits of `mask` this package cannot decode."""
    return mask & ~KNOWN_MASK & 0xFFFFFFFF


def features_of(characteristic: str | int) -> list[Feature]:
    """Features a characteristic (UUID or mask) carries, in payload order (MSB first).

    Raises UnknownFeatureError if any bit is unknown, ValueError for a non-feature UUID.
    """
    mask = mask_of(characteristic)
    unknown = unknown_bits(mask)
    if unknown:
        raise UnknownFeatureError(describe_characteristic(characteristic), unknown)
    return [f for f in FEATURES if mask & f.mask]


def frame_length(features: list[Feature]) -> int:
    """Bytes a notification carrying `features` needs, timestamp included."""
    return TIMESTAMP_LENGTH + sum(f.payload_length for f in features)
