"""Binary resolution: version skew rules and the checksum-verified release download, served
by a real HTTP server on loopback standing in for the release host."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from testbed import binaries


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no request lines on the test's stderr


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "mirror"
    root.mkdir()
    handler = partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("FLUIDOS_SENSORS_RELEASE_MIRROR", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("FLUIDOS_SENSORS_CACHE", str(tmp_path / "cache"))
    try:
        yield root
    finally:
        server.shutdown()
        server.server_close()


def _publish(root: Path, binary: binaries.Binary, payload: bytes, sums: str | None = None) -> str:
    assert binary.release is not None
    url, sums_url = binary.release.resolved(binary.version)
    path = root / url.split("://", 1)[1].split("/", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    sums_path = root / sums_url.split("://", 1)[1].split("/", 1)[1]
    default = f"{digest}  {path.name}\n" if binary.release.member else digest
    sums_path.write_text(sums if sums is not None else default)
    return digest


def test_plain_binary_is_verified_and_cached(mirror: Path) -> None:
    _publish(mirror, binaries.KUBE_APISERVER, b"#!/bin/sh\necho apiserver\n")
    target = binaries.KUBE_APISERVER.cache_path
    binaries.download_release(binaries.KUBE_APISERVER, target, log=lambda _m: None)
    assert target.read_bytes() == b"#!/bin/sh\necho apiserver\n"
    assert target.stat().st_mode & 0o111


def test_tarball_member_is_extracted(mirror: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("etcd-v/etcd", b"ETCD"), ("etcd-v/etcdctl", b"CTL")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _publish(mirror, binaries.ETCD, buffer.getvalue())
    target = binaries.ETCD.cache_path
    binaries.download_release(binaries.ETCD, target, log=lambda _m: None)
    assert target.read_bytes() == b"ETCD"


def test_checksum_mismatch_is_refused(mirror: Path) -> None:
    _publish(mirror, binaries.KUBE_APISERVER, b"tampered", sums="0" * 64)
    target = binaries.KUBE_APISERVER.cache_path
    with pytest.raises(binaries.MissingBinary, match="does not match"):
        binaries.download_release(binaries.KUBE_APISERVER, target, log=lambda _m: None)
    assert not target.exists()


def test_unreachable_release_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUIDOS_SENSORS_RELEASE_MIRROR", "http://127.0.0.1:9")
    with pytest.raises(binaries.MissingBinary, match="Install Go"):
        binaries.download_release(binaries.KUBE_APISERVER, tmp_path / "x", log=lambda _m: None)


@pytest.mark.parametrize(
    ("binary", "found", "ok"),
    [
        (binaries.KUBECTL, "v1.36.0", True),
        (binaries.KUBECTL, "v1.37.2", True),
        (binaries.KUBECTL, "v1.32.4", False),
        (binaries.KUBE_APISERVER, "v1.36.9", True),
        (binaries.KUBE_APISERVER, "v1.35.1", False),
        (binaries.ETCD, "3.5.1", True),
        (binaries.ETCD, "3.4.9", False),
    ],
)
def test_version_rules(binary: binaries.Binary, found: str, ok: bool) -> None:
    assert binary.accepts(found) is ok


def test_helm_on_path_is_used_when_it_is_helm_4(tmp_path: Path) -> None:
    """`helm version --short` prints e.g. v4.3.2+g1a2b3c4; Helm 3 on PATH is not taken."""
    fake = tmp_path / "helm"
    for printed, accepted in (("v4.1.0+gdeadbee", True), ("v3.19.0+g1234567", False)):
        fake.write_text(f"#!/bin/sh\necho {printed}\n")
        fake.chmod(0o755)
        found = binaries.reported_version(binaries.HELM, fake)
        assert found == printed.split("+")[0]
        assert binaries.HELM.accepts(found) is accepted
