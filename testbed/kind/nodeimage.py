"""The kind node image, built offline and cached by version.

Where no registry answers, `kindest/node` cannot be pulled and `kind build node-image` cannot
run (it fetches images from registries during the build). This builds the same thing from
parts that are at hand:

1. a Debian bookworm root filesystem (debootstrap, `rootfs.py`), with kind's own
   `images/base/files` (entrypoint, containerd and kubelet units, sysctls) read from the
   `sigs.k8s.io/kind` module in the Go module cache;
2. containerd v2 + shim + ctr, crictl, kubelet, kubeadm, kubectl, built from the Go module proxy
   (`testbed/binaries.py`); Debian's runc 1.1.5 and CNI plugins;
3. the control-plane images (kube-apiserver, kube-controller-manager, kube-scheduler,
   kube-proxy, etcd, CoreDNS, pause) as image tarballs written here from those binaries, then
   imported into the node's containerd the way kind's builder does: containerd started in a
   build container, `ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=
   pinned --no-unpack`, then `docker commit`.

The result is tagged `fluidos-sensors/kind-node:<kubernetes version>-<key>`; the key hashes every
version and recipe that goes in, so a change builds a new image and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed import binaries, paths
from testbed.kind import archive, rootfs
from testbed.kind.docker import Engine
from testbed.kind.steps import Log, StepFailed, run, step

REPOSITORY = "fluidos-sensors/kind-node"
# Bump when what goes into the node changes in a way the versions below do not show.
RECIPE = "1"
ETCD_IMAGE_TAG = binaries.ETCD_VERSION.lstrip("v") + "-0"
COREDNS_IMAGE_TAG = binaries.COREDNS_VERSION
# The node's runc: a wrapper in front of Debian's. The kubelet asks for oom_score_adj -998 for
# pod sandboxes; lowering it needs CAP_SYS_RESOURCE, which the nodes here lack, and runc then
# fails ("can't get final child's PID from pipe: EOF"). Raise negative values to 0.
NODE_RUNC_WRAPPER = """#!/bin/sh
# fluidos-sensors kind node: runc with negative oomScoreAdj raised to 0 (no CAP_SYS_RESOURCE).
bundle=.
prev=
for arg in "$@"; do
  case "$prev" in --bundle|-b) bundle="$arg" ;; esac
  case "$arg" in --bundle=*) bundle="${arg#--bundle=}" ;; esac
  prev="$arg"
done
for arg in "$@"; do
  case "$arg" in
    create|run)
      config="$bundle/config.json"
      if [ -f "$config" ] && jq -e '(.process.oomScoreAdj // 0) < 0' "$config" >/dev/null; then
        jq '.process.oomScoreAdj = 0' "$config" > "$config.fsk" && mv "$config.fsk" "$config"
      fi
      break ;;
    exec|start|delete|kill|state|features|--version|-v) break ;;
  esac
done
exec /usr/sbin/runc "$@"
"""


@dataclass(frozen=True)
class ImageSpec:
    """One control-plane image: its repository, tag, the binary and where it goes."""

    binary: binaries.Binary | None
    repository: str
    tag: str
    path: str
    entrypoint: list[str] | None = None
    debian_base: bool = False  # kube-proxy runs iptables, so it needs a userland


def kind_module_dir() -> Path:
    """`sigs.k8s.io/kind@<version>` in the Go module cache (downloaded once)."""
    return _module_dir("sigs.k8s.io/kind", binaries.KIND_VERSION)


def _module_dir(module: str, version: str) -> Path:
    go = shutil.which("go")
    if not go:
        raise StepFailed(f"Go is needed to fetch {module}@{version} from the Go module proxy")
    with tempfile.TemporaryDirectory(prefix="gomod-") as tmp:
        Path(tmp, "go.mod").write_text("module probe\n\ngo 1.26.0\n")
        info = json.loads(
            run([go, "mod", "download", "-json", f"{module}@{version}"], what="go mod download")
            or "{}"
        )
    return Path(info["Dir"])


def _kind_sandbox_image(kind_dir: Path) -> str:
    config = (kind_dir / "images/base/files/etc/containerd/config.toml").read_text()
    match = re.search(r'sandbox_image\s*=\s*"([^"]+)"', config)
    if not match:
        raise StepFailed("kind's containerd config names no sandbox_image")
    return match.group(1)


def pause_binary(log: Log) -> Path:
    """Kubernetes' pause (a C program in the kubernetes module), compiled static once."""
    target = paths.cache_dir() / "bin" / "pause" / binaries.KUBERNETES_VERSION / "pause"
    if target.is_file():
        return target
    with step(log, "compile pause from k8s.io/kubernetes", "install gcc and libc6-dev"):
        source = _module_dir("k8s.io/kubernetes", binaries.KUBERNETES_VERSION)
        pause_c = source / "build/pause/linux/pause.c"
        target.parent.mkdir(parents=True, exist_ok=True)
        cc = shutil.which("gcc") or shutil.which("cc")
        if not cc:
            raise StepFailed("no C compiler (gcc) to build pause")
        run(
            [*("nice", "-n", "19", cc, "-Os", "-Wall", "-static"), "-o", target, pause_c],
            what="gcc pause.c",
        )
    return target


def image_specs(sandbox_image: str, kubeadm_images: list[str]) -> list[ImageSpec]:
    """The images kubeadm and containerd ask for, with the tags of what is built here."""

    def repository(name: str) -> str:
        for image in kubeadm_images:
            repo = image.rsplit(":", 1)[0]
            if repo.rsplit("/", 1)[-1] == name:
                return repo
        raise StepFailed(f"kubeadm config images list names no {name}: {kubeadm_images}")

    version = binaries.KUBERNETES_VERSION
    specs = [
        ImageSpec(
            binaries.KUBE_APISERVER,
            repository("kube-apiserver"),
            version,
            "/usr/local/bin/kube-apiserver",
        ),
        ImageSpec(
            binaries.KUBE_CONTROLLER_MANAGER,
            repository("kube-controller-manager"),
            version,
            "/usr/local/bin/kube-controller-manager",
        ),
        ImageSpec(
            binaries.KUBE_SCHEDULER,
            repository("kube-scheduler"),
            version,
            "/usr/local/bin/kube-scheduler",
        ),
        ImageSpec(
            binaries.KUBE_PROXY,
            repository("kube-proxy"),
            version,
            "/usr/local/bin/kube-proxy",
            debian_base=True,
        ),
        ImageSpec(binaries.ETCD, repository("etcd"), ETCD_IMAGE_TAG, "/usr/local/bin/etcd"),
        ImageSpec(
            binaries.COREDNS,
            repository("coredns"),
            COREDNS_IMAGE_TAG,
            "/coredns",
            entrypoint=["/coredns"],
        ),
    ]
    pause_repo, pause_tag = sandbox_image.rsplit(":", 1)
    specs.append(ImageSpec(None, pause_repo, pause_tag, "/pause", entrypoint=["/pause"]))
    return specs


def node_binaries() -> dict[str, binaries.Binary]:
    """Node path -> binary (kind's builder puts kubelet, kubeadm, kubectl in /usr/bin)."""
    return {
        "/usr/local/bin/containerd": binaries.CONTAINERD,
        "/usr/local/bin/containerd-shim-runc-v2": binaries.CONTAINERD_SHIM,
        "/usr/local/bin/ctr": binaries.CTR,
        "/usr/local/bin/crictl": binaries.CRICTL,
        "/usr/bin/kubelet": binaries.KUBELET,
        "/usr/bin/kubeadm": binaries.KUBEADM,
        "/usr/bin/kubectl": binaries.KUBECTL,
    }


def cache_key() -> str:
    versions = [f"{b.name}={b.version}" for b in binaries.KIND_ALL.values()]
    parts = [RECIPE, rootfs.cache_key(), *sorted(versions), ETCD_IMAGE_TAG, COREDNS_IMAGE_TAG]
    parts.append(hashlib.sha256(NODE_RUNC_WRAPPER.encode()).hexdigest())
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()[:12]


def image_tag() -> str:
    return f"{REPOSITORY}:{binaries.KUBERNETES_VERSION}-{cache_key()}"


def _docker(engine: Engine) -> Callable[..., str]:
    docker = shutil.which("docker") or "docker"
    env = engine.env()

    def call(*args: str | Path, what: str, timeout: float | None = None) -> str:
        return run([docker, *args], what=what, env=env, timeout=timeout)

    return call


def image_exists(engine: Engine, tag: str) -> bool:
    docker = shutil.which("docker") or "docker"
    proc = subprocess.run(
        [docker, "image", "inspect", tag], env=engine.env(), capture_output=True, check=False
    )
    return proc.returncode == 0


def _resolve(binary: binaries.Binary, log: Log) -> Path:
    if binary.cache_path.exists() or shutil.which(binary.name):
        return binaries.resolve(binary, log=log)
    retry = (
        f"`fluidos-sensors testbed binaries` builds it alone; Go build errors above. Put a "
        f"{binary.name} {binary.version} in FLUIDOS_SENSORS_BIN_DIR to skip the build"
    )
    with step(log, f"build {binary.name} {binary.version}", retry):
        return binaries.resolve(binary, log=log)


def _control_plane_tarballs(
    specs: list[ImageSpec], base: Path, pause: Path, log: Log
) -> list[Path]:
    folder = paths.cache_dir() / "kind" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    tarballs = []
    for spec in specs:
        name = f"{spec.repository.rsplit('/', 1)[-1]}-{spec.tag}"
        target = (
            folder / f"{name}-{RECIPE}{'-' + rootfs.cache_key() if spec.debian_base else ''}.tar"
        )
        tarballs.append(target)
        if target.is_file():
            continue
        source = pause if spec.binary is None else _resolve(spec.binary, log)
        with (
            step(log, f"image {spec.repository}:{spec.tag}", f"delete {target} and retry"),
            tempfile.TemporaryDirectory(dir=folder) as tmp,
        ):
            with archive.Layer(Path(tmp) / "layer.tar") as layer:
                layer.directory("tmp", 0o1777)
                layer.file(spec.path, source)
            layers = [base, layer.path] if spec.debian_base else [layer.path]
            archive.write_image(
                target,
                [f"{spec.repository}:{spec.tag}"],
                layers,
                archive.ImageConfig(entrypoint=spec.entrypoint),
            )
    return tarballs


def _node_layer(target: Path, kind_dir: Path, node_bins: dict[str, Path]) -> None:
    """kind's base files, the binaries and the settings these machines need, as one layer."""
    files = kind_dir / "images/base/files"
    layer = archive.Layer(target)
    for source in sorted(files.rglob("*")):
        relative = source.relative_to(files).as_posix()
        if source.is_dir():
            mode = 0o755
            layer.directory(relative, mode)
            continue
        executable = relative.startswith(("usr/local/bin/", "kind/bin/"))
        content = source.read_bytes()
        if relative == "etc/containerd/config.toml":
            # kubelet runs with cgroupDriver cgroupfs here (cgroup v1, nested): same for runc.
            content = content.replace(b"SystemdCgroup = true", b"SystemdCgroup = false")
        layer.data(relative, content, 0o755 if executable else 0o644)
    for node_path, binary in node_bins.items():
        layer.file(node_path, binary)
    layer.data("/usr/local/sbin/runc", NODE_RUNC_WRAPPER.encode(), 0o755)
    layer.symlink("/opt/cni/bin", "/usr/lib/cni")
    layer.directory("/etc/kubernetes/manifests")
    layer.directory("/kind/images")
    layer.data("/kind/version", binaries.KUBERNETES_VERSION.encode())
    wants = "/etc/systemd/system/multi-user.target.wants"
    for unit in ("kubelet.service", "containerd.service", "undo-mount-hacks.service"):
        layer.symlink(f"{wants}/{unit}", f"/etc/systemd/system/{unit}")
    layer.symlink("/etc/systemd/system/systemd-binfmt.service", "/dev/null")
    layer.close()


_IMPORT_SCRIPT = """set -e
ctr oci spec \\
  | jq '.hooks.createContainer[.hooks.createContainer| length] |= . +
        {"path": "/kind/bin/mount-product-files.sh"}' \\
  | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
containerd --version
runc --version | head -1
nohup containerd > /tmp/containerd.log 2>&1 &
for i in $(seq 1 60); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.5; done
ctr info > /dev/null
for image in /kind/images/*.tar; do
  ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \\
    --all-platforms --no-unpack --digests "$image" > /dev/null
done
ctr --namespace=k8s.io images list -q
pkill containerd
for i in $(seq 1 60); do pgrep -x containerd > /dev/null || break; sleep 0.5; done
rm -rf /kind/images/* /tmp/containerd.log
"""


def build(engine: Engine, log: Log, *, force: bool = False) -> str:
    """The node image's tag, building it (and what it needs) unless the engine already has it."""
    tag = image_tag()
    if not force and image_exists(engine, tag):
        log(f"[kind] node image {tag}: present")
        return tag
    started = time.monotonic()
    docker = _docker(engine)
    kind_dir = kind_module_dir()
    base_tar = rootfs.ensure_rootfs(log)
    node_bins = {path: _resolve(binary, log) for path, binary in node_binaries().items()}
    kubeadm_images = run(
        [
            node_bins["/usr/bin/kubeadm"],
            "config",
            "images",
            "list",
            "--kubernetes-version",
            binaries.KUBERNETES_VERSION,
        ],
        what="kubeadm config images list",
    ).split()
    specs = image_specs(_kind_sandbox_image(kind_dir), kubeadm_images)
    pause = pause_binary(log)
    tarballs = _control_plane_tarballs(specs, base_tar, pause, log)
    work = paths.cache_dir() / "kind" / "work"
    work.mkdir(parents=True, exist_ok=True)
    base_tag = f"{REPOSITORY}-base:{cache_key()}"
    retry = "run the same command again (cached steps are skipped)"
    with (
        step(log, f"load base image {base_tag}", retry),
        tempfile.TemporaryDirectory(dir=work) as tmp,
    ):
        layer = Path(tmp) / "node.tar"
        _node_layer(layer, kind_dir, node_bins)
        image = Path(tmp) / "image.tar"
        archive.write_image(
            image,
            [base_tag],
            [base_tar, layer],
            archive.ImageConfig(
                entrypoint=["/usr/local/bin/entrypoint", "/sbin/init"],
                env=[
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "container=docker",
                ],
                stop_signal="SIGRTMIN+3",
            ),
        )
        docker("load", "-i", image, what="docker load (node base)")
    container = f"fluidos-kind-build-{os.getpid()}"
    try:
        with step(log, f"import {len(tarballs)} images into the node's containerd", retry):
            docker(
                "run",
                "-d",
                "--privileged",
                "--name",
                container,
                "--entrypoint",
                "sleep",
                base_tag,
                "infinity",
                what="docker run (build container)",
            )
            for tarball in tarballs:
                docker(
                    "cp",
                    tarball,
                    f"{container}:/kind/images/{tarball.name}",
                    what=f"docker cp {tarball.name}",
                )
            imported = docker(
                "exec", container, "bash", "-c", _IMPORT_SCRIPT, what="containerd image import"
            )
            log("[kind] " + " ".join(imported.split()))
        with step(log, f"commit node image {tag}", retry):
            docker(
                "commit",
                "--change",
                'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
                "--change",
                "CMD []",
                container,
                tag,
                what="docker commit",
            )
    finally:
        subprocess.run(
            [shutil.which("docker") or "docker", "rm", "-f", "-v", container],
            env=engine.env(),
            capture_output=True,
            check=False,
        )
        subprocess.run(
            [shutil.which("docker") or "docker", "rmi", base_tag],
            env=engine.env(),
            capture_output=True,
            check=False,
        )
    log(f"[kind] node image {tag} ready in {time.monotonic() - started:.0f} s")
    return tag
