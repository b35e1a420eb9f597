"""The node's Debian bookworm root filesystem, made with debootstrap and cached as a tarball."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from testbed import paths
from testbed.kind.steps import Log, StepFailed, run, step

SUITE = "bookworm"
# What kind's base image installs (images/base/Dockerfile), minus network storage and
# fuse-overlayfs, plus Debian's runc 1.1.5 and CNI plugins (not built from the Go proxy: runc
# needs cgo and libseccomp).
PACKAGES = (
    "systemd",
    "conntrack",
    "iptables",
    "nftables",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "libseccomp2",
    "pigz",
    "bash",
    "ca-certificates",
    "curl",
    "jq",
    "procps",
    "runc",
    "containernetworking-plugins",
)
# Bump when the commands below change what the tarball holds.
RECIPE = "1"


def mirror() -> str:
    """The Debian mirror apt uses here (`FLUIDOS_SENSORS_DEBIAN_MIRROR` overrides)."""
    configured = os.environ.get("FLUIDOS_SENSORS_DEBIAN_MIRROR")
    if configured:
        return configured
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for source in sources:
        try:
            text = source.read_text()
        except OSError:
            continue
        if "debian" not in text or "security" in source.name:
            continue
        match = re.search(r"^URIs:\s*(\S*/debian)/?\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S*/debian)/?\s+" + SUITE + r"\s", text, re.M
        )
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def cache_key() -> str:
    return hashlib.sha256(f"{SUITE} {RECIPE} {' '.join(PACKAGES)}".encode()).hexdigest()[:12]


def tarball_path() -> Path:
    return paths.cache_dir() / "kind" / f"rootfs-{SUITE}-{cache_key()}.tar"


def _debootstrap() -> str:
    found = shutil.which("debootstrap")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StepFailed("debootstrap is not installed: apt-get install debootstrap (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], what="apt-get update", env=env)
    run(["apt-get", "install", "-y", "-qq", "debootstrap"], what="apt-get install debootstrap")
    return shutil.which("debootstrap") or "/usr/sbin/debootstrap"


def _trim(root: Path) -> None:
    """What kind's base image removes or changes after installing its packages."""
    for pattern in (
        "lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
        "lib/systemd/system/multi-user.target.wants/*",
        "etc/systemd/system/*.wants/*",
        "lib/systemd/system/local-fs.target.wants/*",
        "lib/systemd/system/sockets.target.wants/*udev*",
        "lib/systemd/system/sockets.target.wants/*initctl*",
        "lib/systemd/system/basic.target.wants/*",
    ):
        for found in root.glob(pattern):
            if found.is_symlink() or found.is_file():
                found.unlink()
    journald = root / "etc/systemd/journald.conf"
    journald.write_text(journald.read_text() + "ReadKMsg=no\n")
    init = root / "sbin/init"
    if init.is_symlink() or init.exists():
        init.unlink()
    init.symlink_to("/usr/lib/systemd/systemd")
    for cleaned in (
        "var/lib/apt/lists",
        "var/cache/apt/archives",
        "usr/share/doc",
        "usr/share/man",
    ):
        target = root / cleaned
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()


def unmount_below(root: Path) -> None:
    """Unmount whatever a failed debootstrap or build left mounted below `root` (deepest first),
    so that removing the folder never reaches into /proc or /sys."""
    prefix = str(root.resolve()) + "/"
    mounts = [
        line.split()[1].replace("\\040", " ")
        for line in Path("/proc/self/mounts").read_text().splitlines()
    ]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        run(["umount", "-l", mount], what=f"umount {mount}")


def ensure_rootfs(log: Log) -> Path:
    """The cached rootfs tarball, made once with debootstrap (a few minutes)."""
    target = tarball_path()
    if target.is_file():
        log(f"[kind] Debian {SUITE} rootfs: cached {target}")
        return target
    retry = "check the Debian mirror (FLUIDOS_SENSORS_DEBIAN_MIRROR) and run the command again"
    with step(log, f"debootstrap {SUITE} minbase + {len(PACKAGES)} packages", retry):
        if os.geteuid() != 0:
            raise StepFailed("debootstrap needs root")
        debootstrap = _debootstrap()
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="rootfs-", dir=target.parent) as tmp:
            root = Path(tmp) / "root"
            try:
                _bootstrap(debootstrap, root, target)
            finally:
                unmount_below(Path(tmp))
            _trim(root)
            partial = Path(tmp) / "rootfs.tar"
            run(
                ["tar", "--numeric-owner", "--xattrs", "-C", root, "-cf", partial, "."],
                what="tar rootfs",
            )
            partial.replace(target)
        log(f"[kind] rootfs tarball {target} ({target.stat().st_size / 1e6:.0f} MB)")
    return target


def _bootstrap(debootstrap: str, root: Path, target: Path) -> None:
    run(
        [
            "nice",
            "-n",
            "19",
            debootstrap,
            "--variant=minbase",
            "--include=" + ",".join(PACKAGES),
            SUITE,
            root,
            mirror(),
        ],
        what="debootstrap",
        log_file=target.parent / "debootstrap.log",
    )
