"""The BLE driver: find BlueST boards with bleak, connect, subscribe, decode.

It knows nothing about MQTT or Kubernetes: what it learns goes to a `BoardListener`.
Real and simulated boards take the same path; only the bleak `backend=` classes differ
(`BleBackends()` is the platform's own, i.e. BlueZ on Linux).
"""

from mapper.ble.link import (
    BleBackends,
    BoardInfo,
    BoardLink,
    BoardListener,
    LinkSettings,
    LinkStats,
)
from mapper.ble.scanner import BoardScanner, Sighting

__all__ = [
    "BleBackends",
    "BoardInfo",
    "BoardLink",
    "BoardListener",
    "BoardScanner",
    "LinkSettings",
    "LinkStats",
    "Sighting",
]
