"""The testbed's own Docker engine, for real: it runs `--privileged` containers (what kind's
nodes are) on a kernel whose capability bounding set lacks some capabilities, and leaves nothing
behind when it stops. Needs root and Debian's docker.io (installed with apt-get if absent)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.kind import archive
from testbed.kind.docker import Engine

pytestmark = pytest.mark.kind


def _shell_image(folder: Path) -> Path:
    """An image holding the host's sh and sleep and the libraries they load (no registry)."""
    programs = {"/bin/sh": "/bin/sh", "/bin/sleep": shutil.which("sleep") or "/bin/sleep"}
    libraries: set[str] = set()
    for program in programs.values():
        ldd = subprocess.check_output(["ldd", program], text=True)
        libraries.update(re.findall(r"(/\S+\.so[.\d]*)", ldd))
    with archive.Layer(folder / "layer.tar") as layer:
        for name, program in programs.items():
            layer.file(name, Path(os.path.realpath(program)))
        for library in sorted(libraries):
            layer.file(library, Path(os.path.realpath(library)))
        layer.directory("/proc")
        layer.directory("/sys")
        layer.directory("/dev")
        layer.directory("/etc")
    target = folder / "image.tar"
    archive.write_image(target, ["fluidos-probe:1"], [layer.path], archive.ImageConfig())
    return target


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(
        tmp_path / "docker",
        bridge=f"fskt{os.getpid() % 100000}",
        bridge_address="10.212.250.1/24",
        address_pool="10.214.0.0/16",
    )
    try:
        yield engine
    finally:
        engine.stop(lambda _m: None)


def _docker(engine: Engine, *args: str | Path) -> str:
    docker = shutil.which("docker") or "docker"
    proc = subprocess.run(
        [docker, *map(str, args)], env=engine.env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_privileged_containers_run_and_nothing_is_left(engine: Engine, tmp_path: Path) -> None:
    engine.start(print)
    assert engine.healthy()
    _docker(engine, "load", "-i", _shell_image(tmp_path))

    out = _docker(
        engine,
        "run",
        "--rm",
        "--privileged",
        "fluidos-probe:1",
        "/bin/sh",
        "-c",
        "while read k v; do [ $k = CapEff: ] && echo $v; done < /proc/self/status; true",
    )
    effective = int(out.strip(), 16)
    # Every capability but the ones the host lacks: CAP_SYS_ADMIN (21) among them.
    assert effective & (1 << 21)
    _docker(
        engine,
        "run",
        "-d",
        "--privileged",
        "--name",
        "probe",
        "fluidos-probe:1",
        "/bin/sleep",
        "infinity",
    )
    assert (
        _docker(engine, "exec", "--privileged", "probe", "/bin/sh", "-c", "echo ok").strip() == "ok"
    )
    assert engine.processes()

    engine.stop(print)
    assert engine.processes() == []
    assert not Path(f"/sys/class/net/{engine.bridge}").exists()
    mounts = Path("/proc/self/mounts").read_text()
    assert str(engine.root) not in mounts
    assert str(engine.run_dir) not in mounts and not engine.run_dir.exists()
