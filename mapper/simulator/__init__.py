"""Simulated BlueST boards behind bleak's `backend=` hook.

Build a SimulatedRadio, add boards (`radio.add_board(stwin_box())`), then hand
`scanner_backend(radio)` to `BleakScanner(backend=...)` and `client_backend(radio)` to
`BleakClient(backend=...)`.
"""

from mapper.simulator.backend import (
    SimulatedClient,
    SimulatedScanner,
    client_backend,
    scanner_backend,
)
from mapper.simulator.board import (
    BOARD_MODELS,
    ENVIRONMENTAL_RATES_HZ,
    INERTIAL_RATES_HZ,
    AdvertisingFormat,
    SimulatedBoard,
    offered_rates,
    sensortile,
    stwin_box,
)
from mapper.simulator.radio import SimulatedRadio
from mapper.simulator.signals import BatteryModel, SensorModel

__all__ = [
    "BOARD_MODELS",
    "ENVIRONMENTAL_RATES_HZ",
    "INERTIAL_RATES_HZ",
    "AdvertisingFormat",
    "BatteryModel",
    "SensorModel",
    "SimulatedBoard",
    "SimulatedClient",
    "SimulatedRadio",
    "SimulatedScanner",
    "client_backend",
    "offered_rates",
    "scanner_backend",
    "sensortile",
    "stwin_box",
]
