"""Simulated BlueST boards: what they advertise, what they notify how often, what the
console answers. The BLE link itself lives in `radio` and `backend`.
"""

from __future__ import annotations

import hashlib
import re
import string
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np

from mapper.bluest.features import (
    ACCELEROMETER,
    BATTERY,
    GYROSCOPE,
    HUMIDITY,
    MAGNETOMETER,
    PRESSURE,
    SECOND_TEMPERATURE,
    TEMPERATURE,
)
from mapper.simulator.encode import (
    advertising_payload_v1,
    advertising_payload_v2,
    as_bleak_manufacturer_data,
    encode_notification,
)
from mapper.simulator.signals import BatteryModel, BatterySignal, SensorModel, SensorSignal

AdvertisingFormat = Literal["v2", "v1", "legacy"]
"""v2: company 0x0030 + firmware id; v1: company 0x0030 + feature mask; legacy: no company id."""

# Rates ST's BLE sensor firmware lets a client choose.
ENVIRONMENTAL_RATES_HZ = (1.0, 10.0, 20.0)
INERTIAL_RATES_HZ = (10.0, 20.0, 30.0)
_ENVIRONMENTAL_BITS = PRESSURE.mask | HUMIDITY.mask | TEMPERATURE.mask | SECOND_TEMPERATURE.mask
_INERTIAL_BITS = ACCELEROMETER.mask | GYROSCOPE.mask | MAGNETOMETER.mask

_MAC = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_TICKS_PER_SECOND = 100


def _bits(mask: int) -> list[int]:
    return [1 << bit for bit in range(31, -1, -1) if mask & (1 << bit)]


def offered_rates(mask: int) -> tuple[float, ...] | None:
    """The rates the firmware offers a feature characteristic (None: any positive rate)."""
    if mask & _ENVIRONMENTAL_BITS and not mask & ~_ENVIRONMENTAL_BITS:
        return ENVIRONMENTAL_RATES_HZ
    if mask & _INERTIAL_BITS and not mask & ~_INERTIAL_BITS:
        return INERTIAL_RATES_HZ
    return None


def default_uid(mac: str) -> bytes:
    """A stable, realistic 96-bit STM32 UID for a MAC: die X/Y, wafer number, ASCII lot."""
    digest = hashlib.sha256(mac.upper().encode()).digest()
    alphabet = string.ascii_uppercase + string.digits
    lot = "".join(alphabet[b % len(alphabet)] for b in digest[5:12])
    return struct.pack("<HHB", digest[0] % 200, digest[1] % 200, 1 + digest[2] % 25) + lot.encode()


class SimulatedBoard:
    """A BlueST board: its advertisement, notifying characteristics and console."""

    def __init__(
        self,
        *,
        model: str,
        board_id: int,
        mac: str,
        local_name: str,
        sensors: Sequence[SensorModel],
        characteristics: Mapping[int, float],
        battery: BatteryModel | None = None,
        advertising: AdvertisingFormat = "v2",
        firmware_id: int = 0x01,
        option_bytes: bytes = b"\x00\x00\x00",
        uid: bytes | None = None,
        mcu_device_id: int = 0x482,
        console_newline: str = "\r\n",
        tick_offset: int = 0,
        mtu: int = 23,
        rssi: int = -60,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`characteristics` maps each notifying feature characteristic's mask to its rate in Hz."""
        self.model = model
        self.board_id = board_id
        self.mac = mac.upper()
        if not _MAC.match(self.mac):
            raise ValueError(f"board {model}: MAC {mac!r} is not of the form AA:BB:CC:DD:EE:FF")
        self.local_name = local_name
        self.advertising = advertising
        self.firmware_id = firmware_id
        self.option_bytes = option_bytes
        self.uid = uid if uid is not None else default_uid(self.mac)
        if len(self.uid) != 12:
            raise ValueError(f"board {model}: an STM32 UID has 12 bytes, got {len(self.uid)}")
        self.mcu_device_id = mcu_device_id
        self.console_newline = console_newline
        self.mtu = mtu
        self.rssi = rssi
        self.sensors = tuple(sensors)
        self.battery = battery
        self._clock = clock
        self._boot = clock()
        self._tick_offset = tick_offset
        self._rng = np.random.default_rng(seed)
        self._signals: dict[int, Callable[[float], tuple[float, ...]]] = {}
        for sensor in self.sensors:
            self._signals[sensor.feature_mask] = SensorSignal(sensor, self._rng).read
        if battery is not None:
            self._signals[battery.feature_mask] = BatterySignal(battery, self._rng, self._boot).read
        self._rates: dict[int, float] = {}
        for mask, rate in characteristics.items():
            missing = [bit for bit in _bits(mask) if bit not in self._signals]
            if missing:
                raise ValueError(
                    f"board {model}: characteristic 0x{mask:08x} needs feature bits "
                    f"{', '.join(f'0x{b:08x}' for b in missing)} that no sensor provides"
                )
            self.set_rate(mask, rate)

    def __repr__(self) -> str:
        return f"SimulatedBoard({self.model}, {self.mac})"

    @property
    def characteristics(self) -> dict[int, float]:
        """Feature characteristic masks and their notification rates in Hz."""
        return dict(self._rates)

    @property
    def feature_mask(self) -> int:
        """Every feature the board exports (what SDK v1 advertisements carry)."""
        mask = 0
        for characteristic in self._rates:
            mask |= characteristic
        return mask

    def rate_hz(self, mask: int) -> float:
        return self._rates[mask]

    def set_rate(self, mask: int, rate_hz: float) -> None:
        """Change a characteristic's rate; the firmware only offers a few per kind."""
        allowed = offered_rates(mask)
        if rate_hz <= 0 or (allowed is not None and rate_hz not in allowed):
            choices = ", ".join(f"{r:g}" for r in allowed) if allowed else "any positive rate"
            raise ValueError(
                f"board {self.model} {self.mac}: characteristic 0x{mask:08x} cannot notify at "
                f"{rate_hz:g} Hz (firmware offers {choices})"
            )
        self._rates[mask] = float(rate_hz)

    # Advertising

    def advertising_payload(self) -> bytes:
        """The manufacturer-specific AD payload exactly as the firmware puts it on air."""
        if self.advertising == "v2":
            return advertising_payload_v2(
                self.board_id, self.firmware_id, self.option_bytes, self.mac
            )
        return advertising_payload_v1(
            self.board_id, self.feature_mask, self.mac, company_id=self.advertising == "v1"
        )

    def manufacturer_data(self) -> dict[int, bytes]:
        """The advertisement's manufacturer data as bleak reports it."""
        return as_bleak_manufacturer_data(self.advertising_payload())

    # Notifications

    def ticks(self, now: float | None = None) -> int:
        """The board's uint16 10 ms timestamp counter at monotonic time `now`."""
        now = self._clock() if now is None else now
        # Floor like the firmware's integer ms / 10; the epsilon absorbs float error.
        elapsed = int((now - self._boot) * _TICKS_PER_SECOND + 1e-6)
        return (self._tick_offset + elapsed) & 0xFFFF

    def notification(self, mask: int, now: float | None = None) -> bytes:
        """The next notification of characteristic `mask`."""
        if mask not in self._rates:
            raise KeyError(f"board {self.model} {self.mac} has no characteristic 0x{mask:08x}")
        now = self._clock() if now is None else now
        readings = {bit: self._signals[bit](now) for bit in _bits(mask)}
        return encode_notification(mask, self.ticks(now), readings)

    # Console

    @property
    def uid_hex(self) -> str:
        """The UID as the firmware prints it: three little-endian 32-bit words in hex."""
        words = struct.unpack("<III", self.uid)
        return "".join(f"{word:08X}" for word in words)

    def console_answer(self, command: bytes) -> bytes:
        """What the console writes back for one command (before chunking to the MTU)."""
        text = command.decode("ascii", errors="replace").strip()
        newline = self.console_newline
        if text == "uid":
            return f"{self.uid_hex}_{self.mcu_device_id:03X}{newline}".encode()
        if text == "info":
            return (
                f"STMicroelectronics simulated {self.model}{newline}"
                f"\tMAC {self.mac}{newline}".encode()
            )
        if text == "help":
            return f"uid: STM32 unique id{newline}info: firmware info{newline}".encode()
        # Firmware echoes what it does not understand.
        return command


def stwin_box(
    mac: str = "C0:8A:31:0E:00:01",
    *,
    rev_b: bool = False,
    environmental_hz: float = 1.0,
    inertial_hz: float = 10.0,
    battery_hz: float = 1.0,
    advertising: AdvertisingFormat = "v2",
    firmware_id: int = 0x01,
    battery_current_known: bool = True,
    tick_offset: int = 0,
    seed: int | None = None,
    local_name: str = "STWINBX",
    clock: Callable[[], float] = time.monotonic,
) -> SimulatedBoard:
    """An STEVAL-STWINBX1 (STWIN.box): environmental 0x00140000 = ILPS22QS pressure +
    STTS22H temperature, inertial 0x00E00000 = ISM330DHCX acc + gyro, IIS2MDC mag, battery."""
    return SimulatedBoard(
        model="STWIN.box",
        board_id=0x12 if rev_b else 0x0E,
        mac=mac,
        local_name=local_name,
        sensors=(
            SensorModel("ILPS22QS", PRESSURE.mask, 0.5, 0.005, (1013.25,), 0.3, 1800.0),
            SensorModel("STTS22H", TEMPERATURE.mask, 0.5, 0.01, (24.0,), 0.3),
            SensorModel("ISM330DHCX", ACCELEROMETER.mask, 10.0, 1.0, (0.0, 0.0, 1000.0), 0.5),
            SensorModel("ISM330DHCX", GYROSCOPE.mask, 1.0, 0.05, (0.0, 0.0, 0.0), 0.02),
            SensorModel("IIS2MDC", MAGNETOMETER.mask, 60.0, 3.0, (220.0, -40.0, 420.0), 1.0),
        ),
        battery=BatteryModel(BATTERY.mask, current_known=battery_current_known),
        characteristics={
            PRESSURE.mask | TEMPERATURE.mask: environmental_hz,
            ACCELEROMETER.mask | GYROSCOPE.mask | MAGNETOMETER.mask: inertial_hz,
            BATTERY.mask: battery_hz,
        },
        advertising=advertising,
        firmware_id=firmware_id,
        mcu_device_id=0x482,  # STM32U585
        console_newline="\r\n",
        tick_offset=tick_offset,
        seed=seed,
        clock=clock,
    )


def sensortile(
    mac: str = "C0:8A:31:02:00:01",
    *,
    environmental_hz: float = 1.0,
    inertial_hz: float = 10.0,
    battery_hz: float = 1.0,
    advertising: AdvertisingFormat = "legacy",
    tick_offset: int = 0,
    seed: int | None = None,
    local_name: str = "STLB100",
    clock: Callable[[], float] = time.monotonic,
) -> SimulatedBoard:
    """An STEVAL-STLKT01V1 (SensorTile) on its cradle, running legacy SDK v1 firmware:
    environmental 0x001C0000 = LPS22HB pressure + HTS221 humidity + HTS221 temperature,
    inertial 0x00E00000 = LSM6DSM acc + gyro, LSM303AGR mag, battery."""
    return SimulatedBoard(
        model="SensorTile",
        board_id=0x02,
        mac=mac,
        local_name=local_name,
        sensors=(
            SensorModel("LPS22HB", PRESSURE.mask, 0.1, 0.0075, (1013.25,), 0.3, 1800.0),
            SensorModel("HTS221", HUMIDITY.mask, 3.5, 0.03, (45.0,), 2.0, 1200.0),
            SensorModel("HTS221", TEMPERATURE.mask, 0.5, 0.016, (24.0,), 0.3),
            SensorModel("LSM6DSM", ACCELEROMETER.mask, 40.0, 1.5, (0.0, 0.0, 1000.0), 0.5),
            SensorModel("LSM6DSM", GYROSCOPE.mask, 3.0, 0.07, (0.0, 0.0, 0.0), 0.02),
            SensorModel("LSM303AGR", MAGNETOMETER.mask, 60.0, 3.0, (220.0, -40.0, 420.0), 1.0),
        ),
        battery=BatteryModel(BATTERY.mask, level_percent=64.0, load_milliamps=30.0),
        characteristics={
            PRESSURE.mask | HUMIDITY.mask | TEMPERATURE.mask: environmental_hz,
            ACCELEROMETER.mask | GYROSCOPE.mask | MAGNETOMETER.mask: inertial_hz,
            BATTERY.mask: battery_hz,
        },
        advertising=advertising,
        mcu_device_id=0x415,  # STM32L476
        console_newline="\n",
        tick_offset=tick_offset,
        seed=seed,
        clock=clock,
    )


BOARD_MODELS: Mapping[str, Callable[..., SimulatedBoard]] = {
    "stwin.box": stwin_box,
    "sensortile": sensortile,
}
"""Board factories by model name, for configuration files."""
