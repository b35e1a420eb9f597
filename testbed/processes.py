"""Declarative child processes: what to run, how to tell it is ready, where it logs.

Adding a process to the testbed means adding one `ProcessSpec`; the supervisor starts specs in
order, waits for each to be ready, restarts the ones that die and stops all in reverse order.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` of a child process: if its parent is killed outright (the supervisor, a
    test run), the kernel ends the child too, so nothing leaks."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortPool:
    """Free loopback ports for one testbed, each handed out once.

    `free_port` only says what is free now: until a process listens on it, the next call may
    give the same port again (it did: a provider's kube-apiserver and its edge broker were
    given one port, and the broker could never start)."""

    def __init__(self, probe: Callable[[], int] = free_port) -> None:
        self._probe = probe
        self._given: set[int] = set()

    def take(self) -> int:
        for _ in range(1000):
            port = self._probe()
            if port not in self._given:
                self._given.add(port)
                return port
        raise RuntimeError("no free loopback port that was not handed out already")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    log: Path
    ready: Callable[[], bool] = lambda: True
    ready_timeout: float = 60.0
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    # Ports it listens on; `down` checks each is free again.
    ports: list[int] = field(default_factory=list)


class ProcessFailed(RuntimeError):
    pass


@dataclass
class ManagedProcess:
    spec: ProcessSpec
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    restart_streak: int = 0  # restarts since it last ran stably, for the backoff
    started_at: float | None = None

    def start(self) -> None:
        self.spec.log.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        with open(self.spec.log, "ab") as log:
            self.popen = subprocess.Popen(
                self.spec.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.spec.env},
                cwd=self.spec.cwd,
                preexec_fn=die_with_parent,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.spec.ready_timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise ProcessFailed(
                    f"{self.spec.name} exited with {self.exit_code}; "
                    f"last lines of {self.spec.log}:\n{self.log_tail()}"
                )
            if self.spec.ready():
                return
            time.sleep(0.2)
        raise ProcessFailed(
            f"{self.spec.name} not ready after {self.spec.ready_timeout:.0f}s; "
            f"last lines of {self.spec.log}:\n{self.log_tail()}"
        )

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.spec.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive or self.popen is None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)
