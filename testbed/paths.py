"""Where the testbed keeps its cache (binaries) and its state (clusters, PKI, logs)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Binaries built or installed once per user: `$FLUIDOS_SENSORS_CACHE`, else XDG cache."""
    configured = os.environ.get("FLUIDOS_SENSORS_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fluidos-sensors"


def state_dir() -> Path:
    """A running testbed: `$FLUIDOS_SENSORS_STATE`, else XDG state `fluidos-sensors/testbed`."""
    configured = os.environ.get("FLUIDOS_SENSORS_STATE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fluidos-sensors" / "testbed"
