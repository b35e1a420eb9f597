"""The KubeEdge and FLUIDOS CRDs the testbed installs, exactly as their projects publish them.

Each file is pinned by origin (repository, commit, path) and SHA-256. A local mirror is used
when present (`FLUIDOS_SENSORS_UPSTREAM`, or `../shared/upstream` beside a checkout); otherwise
the file is downloaded from its origin and its checksum verified.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from testbed import paths

_KUBEEDGE = ("kubeedge/kubeedge", "16cd8548eedb81af293b94f27844144c080eaa89")
_FLUIDOS = ("otto-tom/fluidos-node-edge", "26f3608b44cb6b59886234ca47c6dfb4852d57ed")


@dataclass(frozen=True)
class UpstreamFile:
    mirror_path: str  # relative to the mirror folder
    repository: str
    commit: str
    origin_path: str
    sha256: str

    @property
    def url(self) -> str:
        return (
            f"https://raw.githubusercontent.com/{self.repository}/{self.commit}/{self.origin_path}"
        )


def _kubeedge(name: str, folder: str, sha256: str) -> UpstreamFile:
    return UpstreamFile(f"kubeedge/{name}", *_KUBEEDGE, f"build/crds/{folder}/{name}", sha256)


def _fluidos(name: str, sha256: str) -> UpstreamFile:
    return UpstreamFile(f"fluidos/{name}", *_FLUIDOS, f"deployments/node/crds/{name}", sha256)


CRDS: tuple[UpstreamFile, ...] = (
    _kubeedge(
        "devices_v1beta1_device.yaml",
        "devices",
        "274656d670e8c5a264aadb4493c9b31cf55d4cc5047b2b82cc96af46d0c52e9d",
    ),
    _kubeedge(
        "devices_v1beta1_devicemodel.yaml",
        "devices",
        "0dd13ee618fda96a92376828c91397b4ab0d62b720946573615c66e08f05c8c8",
    ),
    _kubeedge(
        "devices_v1beta1_devicestatus.yaml",
        "devices",
        "a7bf6b83ed1fa0789bab7ebfc44dd3cc3b0aa934ea6088aa18e497c2a248340f",
    ),
    _kubeedge(
        "router_v1_rule.yaml",
        "router",
        "9ebcbf7cec1b8f97a98efce2f48b63770c021ee758cf735c1adf38287ae59398",
    ),
    _kubeedge(
        "router_v1_ruleEndpoint.yaml",
        "router",
        "2b64062a9b865200ee2b911bb162395135da1b0bbff934bcb0e7dc2ec957bd8a",
    ),
    _fluidos(
        "nodecore.fluidos.eu_flavors.yaml",
        "fe005a0cf6a4ade3f46a4ba473f9809f24cf4200eed4623783d35cad86d37833",
    ),
    _fluidos(
        "nodecore.fluidos.eu_solvers.yaml",
        "40d8a250f82f35164312c7140deb3ba51aa20d672956071f73b41b4b4bd2e0a8",
    ),
    _fluidos(
        "nodecore.fluidos.eu_allocations.yaml",
        "0836de8455e5006263813e11da99384caaa691b123faa87f62479325bb73d3d6",
    ),
    _fluidos(
        "reservation.fluidos.eu_reservations.yaml",
        "dfabcd54e19044258c92d24c575122d00327ba966b1ea06ef62d52d09c3533e9",
    ),
    _fluidos(
        "reservation.fluidos.eu_transactions.yaml",
        "596a65c24d231b84325a2b2376c2041c984f0a3d5f32becd48cdc9364fe59ce3",
    ),
    _fluidos(
        "reservation.fluidos.eu_contracts.yaml",
        "44e9fdea036a7ecb56159f756d0f9b6a870b4e6927e4fbba4781967d3f838b89",
    ),
)


class UpstreamUnavailable(RuntimeError):
    pass


def _mirrors() -> list[Path]:
    found = []
    configured = os.environ.get("FLUIDOS_SENSORS_UPSTREAM")
    if configured:
        found.append(Path(configured))
    checkout = Path(__file__).resolve().parent.parent
    found.append(checkout.parent / "shared" / "upstream")
    return found


def mirrored(relative: str) -> Path:
    """A file of the local mirror only (the REAR wire samples were recorded by running
    upstream's code: they have no origin to download from)."""
    for mirror in _mirrors():
        candidate = mirror / relative
        if candidate.is_file():
            return candidate
    raise UpstreamUnavailable(
        f"{relative}: not in a local mirror (set FLUIDOS_SENSORS_UPSTREAM to a folder holding it)"
    )


def _verified(content: bytes, file: UpstreamFile, where: str) -> bytes:
    digest = hashlib.sha256(content).hexdigest()
    if digest != file.sha256:
        raise UpstreamUnavailable(
            f"{where}: SHA-256 {digest} does not match the pinned {file.sha256} of "
            f"{file.repository}@{file.commit[:12]}:{file.origin_path}"
        )
    return content


def read(file: UpstreamFile) -> bytes:
    """The pinned file's bytes, from a mirror, the download cache or its origin."""
    for mirror in _mirrors():
        candidate = mirror / file.mirror_path
        if candidate.is_file():
            return _verified(candidate.read_bytes(), file, str(candidate))
    cached = paths.cache_dir() / "upstream" / file.sha256 / Path(file.origin_path).name
    if cached.is_file():
        return _verified(cached.read_bytes(), file, str(cached))
    try:
        response = httpx.get(file.url, timeout=30, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(
            f"cannot read {file.mirror_path}: no local mirror (set FLUIDOS_SENSORS_UPSTREAM to a "
            f"folder holding it) and downloading {file.url} failed: {exc}"
        ) from exc
    content = _verified(response.content, file, file.url)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(content)
    return content
