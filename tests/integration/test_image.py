"""The fluidos-sensors image: built offline by scripts/build-images.sh, every entrypoint starts.

Docker: the daemon of DOCKER_HOST (or the default socket) when one answers; otherwise the test
runs a dockerd of its own (Debian's `docker.io`, installed with apt-get as root when missing),
with its data-root in the user's cache so the Debian base and the image stay cached between
runs, and stops it at the end. The image is built with `docker build --network none`, then
runs read-only as its non-root user: `--help` of every part, and the resource manager starts
for real against the testbed's API server (host network), as its least-privilege
ServiceAccount, until kopf's liveness endpoint answers.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from testbed import credentials, paths
from testbed.processes import die_with_parent, free_port
from testbed.state import ClusterAccess

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _answers(env: dict[str, str]) -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    proc = subprocess.run(
        [docker, "info"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return proc.returncode == 0


@pytest.fixture(scope="module")
def docker_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = dict(os.environ)
    if _answers(env):
        yield env
        return
    if not shutil.which("dockerd"):
        assert os.geteuid() == 0 and shutil.which("apt-get"), (
            "no Docker daemon answers and dockerd is not installed: install docker.io"
        )
        apt = {**env, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io"],
        ):
            subprocess.run(argv, env=apt, check=True, capture_output=True, timeout=900)
    assert os.geteuid() == 0, "running a dockerd of the test's own needs root"
    run = tmp_path_factory.mktemp("dockerd")
    data = paths.cache_dir() / "docker"  # kept: the base image and build cache survive runs
    data.mkdir(parents=True, exist_ok=True)
    socket = run / "docker.sock"
    config = run / "daemon.json"
    config.write_text(
        json.dumps(
            {
                "data-root": str(data),
                "exec-root": str(run / "exec"),
                "pidfile": str(run / "dockerd.pid"),
                "hosts": [f"unix://{socket}"],
                # Only host-network containers: no bridge, no iptables rules on the machine.
                "bridge": "none",
                "iptables": False,
                "ip-masq": False,
            }
        )
    )
    log = (run / "dockerd.log").open("w")
    dockerd = subprocess.Popen(
        ["dockerd", "--config-file", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    env["DOCKER_HOST"] = f"unix://{socket}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(env):
            assert dockerd.poll() is None, (run / "dockerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "dockerd did not answer within 60 s"
            time.sleep(0.5)
        yield env
    finally:
        dockerd.send_signal(signal.SIGTERM)
        try:
            dockerd.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dockerd.kill()
            dockerd.wait()
        log.close()
        # dockerd leaves its network namespace mounted under its exec-root.
        for mount in sorted(_mounts_under(run), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def _mounts_under(folder: Path) -> list[str]:
    prefix = f"{folder}/"
    with open("/proc/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


@pytest.fixture(scope="module")
def image(docker_env: dict[str, str]) -> str:
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-images.sh")],
        env=docker_env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def _docker(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_image_runs_as_non_root_without_compilers(docker_env: dict[str, str], image: str) -> None:
    user = _docker(docker_env, "image", "inspect", image, "--format", "{{.Config.User}}")
    assert user.stdout.strip() == "65532:65532"
    probe = _docker(
        docker_env,
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        "id -u; for c in gcc cc c++ make ld; do command -v $c; done; true",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["65532"], probe.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["resource-manager", "run", "--help"],
        ["resource-manager", "gateway", "--help"],
        ["router-manager", "run", "--help"],
        ["router-manager", "agent", "--help"],
        ["mapper", "run", "--help"],
        ["consumer", "run", "--help"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_every_entrypoint_starts(
    docker_env: dict[str, str], image: str, command: list[str]
) -> None:
    proc = _docker(docker_env, "run", "--rm", "--read-only", "--network", "none", image, *command)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Usage:" in proc.stdout


def _self_contained(kubeconfig: Path, target: Path) -> None:
    """The kubeconfig with its certificate files inlined, for a container to read."""
    config = yaml.safe_load(kubeconfig.read_text())
    for section, keys in (
        ("clusters", ("certificate-authority",)),
        ("users", ("client-certificate", "client-key")),
    ):
        for entry in config.get(section, []):
            body = entry.get(section[:-1], {})
            for key in keys:
                if key in body:
                    body[f"{key}-data"] = base64.b64encode(
                        Path(body.pop(key)).read_bytes()
                    ).decode()
    target.write_text(yaml.safe_dump(config))
    target.chmod(0o644)  # the container's uid reads it; the folder is the test's own


def test_resource_manager_starts_in_the_container(
    docker_env: dict[str, str], image: str, provider: ClusterAccess, tmp_path: Path
) -> None:
    account = credentials.service_account_kubeconfig(
        provider.kubeconfig,
        "fluidos",
        "fluidos-sensors-resource-manager",
        tmp_path / "account.kubeconfig",
        hours=1,
    )
    kubeconfig = tmp_path / "kubeconfig"
    _self_contained(account, kubeconfig)
    port = free_port()
    name = f"fs-test-rm-{port}"
    started = _docker(
        docker_env,
        "run",
        "--detach",
        "--name",
        name,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--network",
        "host",
        "--volume",
        f"{kubeconfig}:/etc/fluidos-sensors/kubeconfig:ro",
        image,
        "resource-manager",
        "run",
        "--kubeconfig",
        "/etc/fluidos-sensors/kubeconfig",
        "--node-id",
        "image-test",
        "--ip",
        "127.0.0.1",
        # Devices of a namespace nobody uses: it runs beside the testbed's resource manager.
        "--namespace",
        "image-test-none",
        "--liveness",
        f"http://127.0.0.1:{port}/healthz",
    )
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            state = _docker(docker_env, "inspect", name, "--format", "{{.State.Running}}")
            logs = _docker(docker_env, "logs", name)
            assert state.stdout.strip() == "true", logs.stdout + logs.stderr
            assert time.monotonic() < deadline, logs.stdout + logs.stderr
            time.sleep(1)
        logs = _docker(docker_env, "logs", name)
        assert "Forbidden" not in logs.stdout + logs.stderr, logs.stderr[-3000:]
    finally:
        _docker(docker_env, "rm", "--force", name)
