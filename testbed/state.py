"""The testbed's state folder: `config.json` (what to run, written by `up`) and `status.json`
(what runs, written by the supervisor). Readers never need the supervisor to answer."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluidos_sensors.files import write_json_atomic

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"


def write_status(state_dir: Path, status: dict[str, Any]) -> None:
    write_json_atomic(state_dir / STATUS_FILE, status, indent=2)


def process_identity(pid: int) -> dict[str, int]:
    """A process as its pid and start time (clock ticks since boot): a later process given
    the same pid is not taken for it."""
    return {"pid": pid, "started": _start_ticks(pid) or 0}


def identity_alive(identity: dict[str, int]) -> bool:
    """Whether the process of `process_identity` still runs."""
    pid = identity.get("pid")
    if not pid or not pid_alive(pid):
        return False
    started = identity.get("started")
    return not started or _start_ticks(pid) == started


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None  # field 22: starttime
    except (IndexError, ValueError):
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and ")")."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    return bool(fields and fields[0] != "Z")  # a zombie is dead for our purposes


@dataclass(frozen=True)
class ClusterAccess:
    name: str
    role: str
    server: str
    kubeconfig: Path
    nodes: list[dict[str, Any]]


@dataclass(frozen=True)
class TestbedState:
    directory: Path
    status: dict[str, Any]

    __test__ = False  # not a pytest test class

    @classmethod
    def read(cls, directory: Path) -> TestbedState | None:
        try:
            status = json.loads((directory / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return None
        return cls(directory, status)

    @property
    def phase(self) -> str:
        return str(self.status.get("phase", "unknown"))

    @property
    def supervisor_pid(self) -> int | None:
        return self.status.get("pid")

    @property
    def running(self) -> bool:
        return self.phase in ("starting", "ready") and pid_alive(self.supervisor_pid)

    @property
    def clusters(self) -> dict[str, ClusterAccess]:
        return {
            name: ClusterAccess(name, c["role"], c["server"], Path(c["kubeconfig"]), c["nodes"])
            for name, c in self.status.get("clusters", {}).items()
        }

    @property
    def config(self) -> dict[str, Any]:
        return json.loads((self.directory / CONFIG_FILE).read_text())


class TestbedNotRunning(RuntimeError):
    """No testbed runs from the state folder; the message says how to start one."""

    __test__ = False  # not a pytest test class


def running_clusters(directory: Path) -> list[ClusterAccess]:
    """Every cluster of the testbed running from `directory` (for `tui --testbed`)."""
    state = TestbedState.read(directory)
    if state is None or not state.running:
        raise TestbedNotRunning(
            f"no running testbed in {directory} (start one with scripts/setup.sh, or set "
            "FLUIDOS_SENSORS_STATE)"
        )
    return list(state.clusters.values())
