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


# The Helm chart holds the project's CRDs and every part's RBAC: the testbed applies the same
# files the chart renders (one source of truth for what each part may do). It reads them from
# the checkout it runs from: the installed package holds the parts and the CLI, not the chart.
CHART_DIR = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "fluidos-sensors"
OWN_CRDS_DIR = CHART_DIR / "files" / "crds"


def missing_checkout() -> str | None:
    """Why the testbed cannot start from here, if it cannot: it needs a checkout's chart."""
    if CHART_DIR.is_dir():
        return None
    return (
        f"the testbed runs from a checkout of fluidos-sensors (scripts/setup.sh): {CHART_DIR} "
        "is missing"
    )


def rbac_manifest(part: str) -> Path:
    """The RBAC of one part (`resource-manager`, `gateway`, `edge-agent`, ...), as shipped."""
    return CHART_DIR / "files" / "rbac" / f"{part}.yaml"
