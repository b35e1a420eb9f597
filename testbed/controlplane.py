"""One cluster's control plane as processes: etcd and kube-apiserver on loopback, TLS and RBAC."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from testbed.pki import ClusterPKI
from testbed.processes import PortPool, ProcessSpec, port_open

SERVICE_CIDR = "10.0.0.0/24"


@dataclass(frozen=True)
class ClusterEndpoints:
    """Ports chosen once per testbed; restarts of a process reuse them."""

    etcd_client: int
    etcd_peer: int
    apiserver: int

    @classmethod
    def allocate(cls, ports: PortPool) -> ClusterEndpoints:
        return cls(ports.take(), ports.take(), ports.take())

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver}"


def admin_ssl_context(pki: ClusterPKI) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    admin = pki.admin_client()
    context.load_cert_chain(str(admin.cert), str(admin.key))
    return context


def apiserver_ready(server: str, pki: ClusterPKI) -> bool:
    try:
        response = httpx.get(f"{server}/readyz", verify=admin_ssl_context(pki), timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def write_kubeconfig(path: Path, cluster: str, server: str, pki: ClusterPKI) -> Path:
    admin = pki.admin_client()
    user = f"{cluster}-admin"
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority": str(pki.ca.cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(admin.cert), "client-key": str(admin.key)},
            }
        ],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def control_plane_processes(
    cluster: str,
    directory: Path,
    endpoints: ClusterEndpoints,
    binaries: dict[str, Path],
) -> list[ProcessSpec]:
    """etcd then kube-apiserver for `cluster`, with state under `directory`."""
    pki = ClusterPKI(directory / "pki", cluster)
    etcd_tls = pki.etcd_server()
    etcd_client = pki.apiserver_etcd_client()
    serving = pki.apiserver_serving()
    sa = pki.service_account_keys()
    logs = directory / "logs"
    peer = f"https://127.0.0.1:{endpoints.etcd_peer}"
    etcd_url = f"https://127.0.0.1:{endpoints.etcd_client}"
    etcd = ProcessSpec(
        name=f"{cluster}/etcd",
        argv=[
            str(binaries["etcd"]),
            f"--name={cluster}",
            f"--data-dir={directory / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={cluster}={peer}",
            f"--cert-file={etcd_tls.cert}",
            f"--key-file={etcd_tls.key}",
            f"--trusted-ca-file={pki.ca.cert}",
            "--client-cert-auth",
            f"--peer-cert-file={etcd_tls.cert}",
            f"--peer-key-file={etcd_tls.key}",
            f"--peer-trusted-ca-file={pki.ca.cert}",
            "--peer-client-cert-auth",
            # A throwaway testbed on a shared disk: durability is not worth fsync stalls.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        log=logs / "etcd.log",
        ready=lambda: port_open(endpoints.etcd_client),
        ports=[endpoints.etcd_client, endpoints.etcd_peer],
    )
    apiserver = ProcessSpec(
        name=f"{cluster}/kube-apiserver",
        argv=[
            str(binaries["kube-apiserver"]),
            "--advertise-address=127.0.0.1",
            "--bind-address=127.0.0.1",
            f"--secure-port={endpoints.apiserver}",
            f"--etcd-servers={etcd_url}",
            f"--etcd-cafile={pki.ca.cert}",
            f"--etcd-certfile={etcd_client.cert}",
            f"--etcd-keyfile={etcd_client.key}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--anonymous-auth=false",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa.cert}",
            f"--service-account-signing-key-file={sa.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=false",
            "--profiling=false",
            f"--cert-dir={directory / 'apiserver-certs'}",
            "--v=0",
        ],
        log=logs / "kube-apiserver.log",
        ready=lambda: apiserver_ready(endpoints.server, pki),
        ready_timeout=120,
        ports=[endpoints.apiserver],
    )
    return [etcd, apiserver]
