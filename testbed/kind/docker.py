"""A Docker engine that can run kind's `--privileged` node containers.

kind always runs its nodes with `--privileged`. Where the kernel's capability bounding set lacks
a capability (these machines lack `CAP_SYS_RESOURCE`), runc cannot grant every capability and
fails with "unable to apply caps: operation not permitted". The machine's own engine is then
useless for kind, and the testbed runs a dockerd of its own (Debian's `docker.io`):

- everything under `<state>/kind/docker/` (pidfile, daemon.json, log, and the runc wrapper
  registered as that dockerd's default runtime) but for its data root, in the user's cache so
  images survive the testbed (`<cache>/kind/docker`, or under the state folder while another
  engine uses that), and its sockets and exec root,
  which live in `/run/fsk-<hash of that folder>/`: containerd refuses a socket path longer than
  104 bytes, which a deep state folder (or pytest's temporary one) exceeds; the wrapper deletes
  the capabilities the bounding set lacks from every container spec (`create`/`run`) and every
  `exec` process spec, so privileged containers get all the capabilities there are;
- its own default bridge (`fsk-docker0`, 10.212.0.0/24) and address pool (10.213.0.0/16) so it
  never clashes with another dockerd on the machine; `iptables`, `ip-forward` and `ip-masq` off,
  because two daemons sharing the DOCKER iptables chains reset each other's rules (published
  ports still work through docker-proxy);
- nothing of the machine's Docker (`/etc/docker`, `/var/lib/docker`, its socket) is read or
  changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed import paths
from testbed.kind.steps import Log, StepFailed, run, step

BRIDGE = "fsk-docker0"
BRIDGE_ADDRESS = "10.212.0.1/24"
ADDRESS_POOL = "10.213.0.0/16"
RUNTIME = "fluidos-runc"
# The Linux capability numbers kind's privileged containers may ask for.
_CAP_NAMES = {
    0: "CAP_CHOWN",
    1: "CAP_DAC_OVERRIDE",
    2: "CAP_DAC_READ_SEARCH",
    3: "CAP_FOWNER",
    4: "CAP_FSETID",
    5: "CAP_KILL",
    6: "CAP_SETGID",
    7: "CAP_SETUID",
    8: "CAP_SETPCAP",
    9: "CAP_LINUX_IMMUTABLE",
    10: "CAP_NET_BIND_SERVICE",
    11: "CAP_NET_BROADCAST",
    12: "CAP_NET_ADMIN",
    13: "CAP_NET_RAW",
    14: "CAP_IPC_LOCK",
    15: "CAP_IPC_OWNER",
    16: "CAP_SYS_MODULE",
    17: "CAP_SYS_RAWIO",
    18: "CAP_SYS_CHROOT",
    19: "CAP_SYS_PTRACE",
    20: "CAP_SYS_PACCT",
    21: "CAP_SYS_ADMIN",
    22: "CAP_SYS_BOOT",
    23: "CAP_SYS_NICE",
    24: "CAP_SYS_RESOURCE",
    25: "CAP_SYS_TIME",
    26: "CAP_SYS_TTY_CONFIG",
    27: "CAP_MKNOD",
    28: "CAP_LEASE",
    29: "CAP_AUDIT_WRITE",
    30: "CAP_AUDIT_CONTROL",
    31: "CAP_SETFCAP",
    32: "CAP_MAC_OVERRIDE",
    33: "CAP_MAC_ADMIN",
    34: "CAP_SYSLOG",
    35: "CAP_WAKE_ALARM",
    36: "CAP_BLOCK_SUSPEND",
    37: "CAP_AUDIT_READ",
    38: "CAP_PERFMON",
    39: "CAP_BPF",
    40: "CAP_CHECKPOINT_RESTORE",
}

# The runtime wrapper dockerd runs instead of runc. Python (the system's) because the host may
# lack jq; it only rewrites JSON files and then execs runc with the same arguments.
_WRAPPER = """#!{python}
# Written by fluidos-sensors' testbed (testbed/kind/docker.py): runc without the capabilities
# this kernel's bounding set lacks, so that `docker run --privileged` and `docker exec` work.
import json, os, sys

DROP = set({drop!r})
RUNC = {runc!r}


def strip(process):
    caps = process.get("capabilities") or {{}}
    for kind in list(caps):
        if isinstance(caps[kind], list):
            caps[kind] = [c for c in caps[kind] if c not in DROP]


def rewrite(path, is_process):
    with open(path) as f:
        spec = json.load(f)
    strip(spec if is_process else spec.get("process") or {{}})
    with open(path, "w") as f:
        json.dump(spec, f)


args = sys.argv[1:]
for i, arg in enumerate(args):
    if arg in ("create", "run"):
        bundle = "."
        for j, opt in enumerate(args):
            if opt in ("--bundle", "-b") and j + 1 < len(args):
                bundle = args[j + 1]
            elif opt.startswith("--bundle="):
                bundle = opt.split("=", 1)[1]
        config = os.path.join(bundle, "config.json")
        if os.path.exists(config):
            rewrite(config, False)
        break
    if arg == "exec":
        for j, opt in enumerate(args):
            if opt in ("--process", "-p") and j + 1 < len(args):
                rewrite(args[j + 1], True)
            elif opt.startswith("--process="):
                rewrite(opt.split("=", 1)[1], True)
        break
os.execv(RUNC, [RUNC] + args)
"""


class EngineError(StepFailed):
    pass


def missing_capabilities() -> list[str]:
    """Capabilities the kernel knows but this process's bounding set lacks (none on a normal
    host; `CAP_SYS_RESOURCE` on these machines)."""
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        status = Path("/proc/self/status").read_text()
    except OSError:
        return []
    bounding = next(
        (int(line.split()[1], 16) for line in status.splitlines() if line.startswith("CapBnd:")),
        (1 << (last + 1)) - 1,
    )
    return [_CAP_NAMES.get(n, f"CAP_{n}") for n in range(last + 1) if not bounding & (1 << n)]


def machine_engine_usable() -> bool:
    """Whether the machine's Docker engine answers and can run kind's privileged nodes.

    Judged without touching that engine: a local engine runs under this kernel's bounding set,
    so if this process's set lacks a capability, its privileged containers would fail too.
    """
    docker = shutil.which("docker")
    if not docker:
        return False
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return True  # a remote engine: its kernel, not ours
    try:
        proc = subprocess.run(
            [docker, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and not missing_capabilities()


@dataclass(frozen=True)
class Engine:
    """The testbed's own dockerd; every path under `root`. Two engines on one machine need
    their own bridge (a machine-wide interface name) and address pool."""

    root: Path
    bridge: str = BRIDGE
    bridge_address: str = BRIDGE_ADDRESS
    address_pool: str = ADDRESS_POOL
    # Images live here; None: under `root`. The testbed's engine keeps them in the user's cache
    # (node image, project images: minutes to rebuild) unless another engine uses that folder.
    data: Path | None = None

    @classmethod
    def default(cls, state_dir: Path | None = None) -> Engine:
        engine = cls((state_dir or paths.state_dir()) / "kind" / "docker")
        shared = paths.cache_dir() / "kind" / "docker"
        if not engine._other_engines_with(lambda config: config.get("data-root") == str(shared)):
            engine = cls(engine.root, data=shared)
        return engine

    @property
    def run_dir(self) -> Path:
        """Sockets and exec root: a short path whatever `root` is (containerd's sockets must
        stay under 104 bytes), one per engine."""
        return Path("/run") / f"fsk-{hashlib.sha256(str(self.root).encode()).hexdigest()[:12]}"

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def data_root(self) -> Path:
        return self.data or self.root / "data"

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "exec"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def config(self) -> Path:
        return self.root / "daemon.json"

    @property
    def wrapper(self) -> Path:
        return self.root / "runc-wrapper"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    def env(self) -> dict[str, str]:
        """Environment for `docker` and `kind` to talk to this engine and no other."""
        env = {**os.environ, "DOCKER_HOST": self.host}
        env.pop("DOCKER_CONTEXT", None)
        return env

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        cmdline = _cmdline(pid)
        return pid if cmdline and "dockerd" in cmdline[0] else None

    def healthy(self) -> bool:
        docker = shutil.which("docker")
        if not docker or not self.socket.exists():
            return False
        try:
            proc = subprocess.run(
                [docker, "info", "--format", "{{.ServerVersion}}"],
                env=self.env(),
                capture_output=True,
                timeout=20,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0

    def _write_config(self) -> None:
        runc = shutil.which("runc") or "/usr/sbin/runc"
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        drop = sorted(missing_capabilities())
        self.wrapper.write_text(_WRAPPER.format(python=python, drop=drop, runc=runc))
        self.wrapper.chmod(0o755)
        config = {
            "hosts": [self.host],
            "data-root": str(self.data_root),
            "exec-root": str(self.exec_root),
            "pidfile": str(self.pidfile),
            "bridge": self.bridge,
            "default-address-pools": [{"base": self.address_pool, "size": 24}],
            "iptables": False,
            "ip-forward": False,
            "ip-masq": False,
            "runtimes": {RUNTIME: {"path": str(self.wrapper)}},
            "default-runtime": RUNTIME,
            "storage-driver": "overlay2",
            "log-driver": "json-file",
            "log-opts": {"max-size": "10m", "max-file": "2"},
            "features": {"buildkit": False},
        }
        self.config.write_text(json.dumps(config, indent=2) + "\n")

    def _other_engines_on_bridge(self) -> list[int]:
        """Pids of other running dockerds whose daemon.json names this engine's bridge."""
        return self._other_engines_with(lambda config: config.get("bridge") == self.bridge)

    def _other_engines_with(self, match: Callable[[dict[str, Any]], bool]) -> list[int]:
        """Pids of other running dockerds whose daemon.json `match`es."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            cmdline = _cmdline(int(entry.name))
            if not cmdline or not cmdline[0].endswith("dockerd") or "--config-file" not in cmdline:
                continue
            config = Path(cmdline[cmdline.index("--config-file") + 1])
            if config == self.config:
                continue
            try:
                settings = json.loads(config.read_text())
            except (OSError, ValueError, IndexError):
                continue
            if match(settings):
                found.append(int(entry.name))
        return found

    def _ensure_bridge(self) -> None:
        name = self.bridge
        others = self._other_engines_on_bridge()
        if others:
            raise EngineError(
                f"bridge {name} belongs to another testbed dockerd (pid {others}); stop it "
                f"(`fluidos-sensors testbed kind engine-down --state-dir ...`) or give this "
                f"engine its own bridge"
            )
        if Path(f"/sys/class/net/{name}").exists():
            return
        run(["ip", "link", "add", "name", name, "type", "bridge"], what=f"create {name}")
        run(["ip", "addr", "add", self.bridge_address, "dev", name], what=f"address {name}")
        run(["ip", "link", "set", name, "up"], what=f"bring {name} up")

    def start(self, log: Log, timeout: float = 90) -> None:
        """Start the engine (installing Debian's docker.io first if needed); no-op if healthy."""
        if self.pid() and self.healthy():
            log(f"[kind] testbed dockerd already running (pid {self.pid()}, {self.host})")
            return
        retry = f"see {self.log}; `fluidos-sensors testbed kind engine-down` then try again"
        with step(log, f"start the testbed's dockerd ({self.host})", retry):
            dockerd = ensure_docker_installed(log)
            self.root.mkdir(parents=True, exist_ok=True)
            self.run_dir.mkdir(mode=0o700, exist_ok=True)
            self._write_config()
            self._ensure_bridge()
            with open(self.log, "ab") as out:
                proc = subprocess.Popen(
                    [dockerd, "--config-file", str(self.config)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # outlives the command that started it
                )
            deadline = time.monotonic() + timeout
            while not self.healthy():
                if proc.poll() is not None:
                    tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-10:])
                    raise EngineError(f"dockerd exited with {proc.returncode}:\n{tail}")
                if time.monotonic() > deadline:
                    raise EngineError(f"dockerd not answering on {self.socket} after {timeout}s")
                time.sleep(0.5)

    def processes(self) -> list[int]:
        """Pids of this engine's processes: dockerd, its containerd, shims, docker-proxy."""
        marks = (str(self.root) + "/", str(self.run_dir) + "/", str(self.data_root) + "/")
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            cmdline = _cmdline(int(entry.name))
            if cmdline and any(mark in arg for arg in cmdline for mark in marks):
                found.append(int(entry.name))
        own = self.pid()
        if own and own not in found:
            found.append(own)
        return _with_descendants(found)

    def stop(self, log: Log, timeout: float = 60) -> None:
        """Stop the engine (its containers stop with it), then anything it left: processes,
        mounts, the bridge. Its data root stays, so cached images survive."""
        with step(log, "stop the testbed's dockerd", f"kill the pids in {self.pidfile} by hand"):
            pid = self.pid()
            if pid:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while self.pid() and time.monotonic() < deadline:
                    time.sleep(0.3)
            # Anything left (a stuck shim, containerd): ours, as they name our folders.
            leftovers = self.processes()
            for leftover in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leftover, signal.SIGKILL)
            if leftovers:
                log(f"[kind] killed leftover processes {leftovers}")
            deadline = time.monotonic() + 10
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.2)
            for folder in {self.root, self.data_root}:
                if folder.exists():
                    _unmount_below(folder)
            if self.run_dir.exists():
                _unmount_below(self.run_dir)
                shutil.rmtree(self.run_dir, ignore_errors=True)
            bridge_free = not self._other_engines_on_bridge()
            if bridge_free and Path(f"/sys/class/net/{self.bridge}").exists():
                run(["ip", "link", "delete", self.bridge], what=f"delete {self.bridge}")
            self.pidfile.unlink(missing_ok=True)
            left = self.processes()
            if left:
                raise EngineError(f"processes still running: {left}")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _with_descendants(pids: list[int]) -> list[int]:
    """`pids` and every process below them (docker-proxy names none of our folders)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    result, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        if pid in result:
            continue
        result.append(pid)
        todo.extend(parents.get(pid, []))
    return result


def _unmount_below(root: Path) -> None:
    prefix = str(root.resolve()) + "/"
    mounts = [
        line.split()[1].replace("\\040", " ")
        for line in Path("/proc/self/mounts").read_text().splitlines()
    ]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)


def ensure_docker_installed(log: Log) -> str:
    """The path of `dockerd`, installing Debian's docker.io (as root, with apt-get) if absent.

    The package's own service is left alone; the testbed never starts or configures it.
    """
    found = shutil.which("dockerd")
    if found and shutil.which("docker"):
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EngineError(
            "no dockerd here: install Debian's docker.io (apt-get install docker.io) as root, "
            "or use a machine whose Docker engine can run --privileged containers"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with step(log, "apt-get install docker.io", "apt-get install docker.io by hand"):
        run(["apt-get", "update", "-qq"], what="apt-get update", env=env)
        run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io"],
            what="apt-get install docker.io",
            env=env,
        )
    dockerd = shutil.which("dockerd")
    if not dockerd:
        raise EngineError("docker.io installed but dockerd is not on PATH")
    return dockerd
