"""kind clusters on the testbed's engine: create, give every node a pod network, delete.

The kind configs in `kind/` disable kind's default CNI (kindnetd has no source on the Go module
proxy). In its place, as kindnetd does, every node gets a bridge CNI config for the pod CIDR
the controller manager gave it, and a route to every other node's pod CIDR via that node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from testbed import binaries, paths
from testbed.kind.docker import Engine
from testbed.kind.steps import Log, StepFailed, run, step

# The docker network kind puts its nodes on (kind's default name is "kind"): a name of our
# own, so its bridge and IPv6 ULA subnet never meet another engine's "kind" network.
NETWORK = "fluidos-kind"
CONFIG_DIR = Path(__file__).resolve().parents[2] / "kind"


def _bridge_conflist(pod_cidr: str) -> str:
    return json.dumps(
        {
            "cniVersion": "0.4.0",
            "name": "fluidos-bridge",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": pod_cidr}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


# inotify instances one kind node takes (kubelet about 7, systemd 4, containerd 2, kube-proxy 1)
# and a control plane on top (kube-apiserver about 15, controller manager 7), measured here.
INOTIFY_PER_NODE = 15
INOTIFY_PER_CONTROL_PLANE = 23


def inotify_instances_in_use(uid: int | None = None) -> int:
    """inotify instances held by processes of `uid` (this user): the kernel limits them per
    user (`fs.inotify.max_user_instances`), and every kind node of every cluster counts."""
    uid = os.getuid() if uid is None else uid
    count = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if proc.stat().st_uid != uid:
                continue
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == "anon_inode:inotify":
                        count += 1
        except OSError:
            continue
    return count


def check_inotify(config: Path) -> None:
    """Refuse to create a cluster that would run out of inotify instances: kubelets and API
    servers then fail in ways that look like timeouts ("unable to create ClusterRoleBinding:
    ... context deadline exceeded" from kubeadm). Raising the limit is the machine owner's
    call, as kind's known-issues page says; the testbed does not change sysctls."""
    limit_file = Path("/proc/sys/fs/inotify/max_user_instances")
    if not limit_file.exists():
        return
    limit = int(limit_file.read_text())
    nodes = yaml.safe_load(config.read_text()).get("nodes") or [{"role": "control-plane"}]
    planes = sum(1 for n in nodes if n.get("role") == "control-plane")
    needed = len(nodes) * INOTIFY_PER_NODE + planes * INOTIFY_PER_CONTROL_PLANE
    in_use = inotify_instances_in_use()
    if in_use + needed > limit:
        raise StepFailed(
            f"{config.name} needs about {needed} inotify instances; {in_use} of this user's "
            f"{limit} (fs.inotify.max_user_instances) are in use. Raise the limit, e.g. "
            f"`sysctl -w fs.inotify.max_user_instances=512` (kind's known issue), or delete a "
            f"cluster"
        )


class Cluster:
    """One kind cluster on `engine`; its kubeconfig under the testbed's state folder."""

    def __init__(self, engine: Engine, name: str, state_dir: Path | None = None) -> None:
        self.engine = engine
        self.name = name
        self.kubeconfig = (state_dir or paths.state_dir()) / "kind" / f"{name}.kubeconfig"
        self.kind = str(binaries.resolve(binaries.KIND))
        self.kubectl = str(binaries.resolve(binaries.KUBECTL))
        self.docker = shutil.which("docker") or "docker"

    def env(self) -> dict[str, str]:
        return {**self.engine.env(), "KIND_EXPERIMENTAL_DOCKER_NETWORK": NETWORK}

    def kubectl_run(self, *args: str, what: str, timeout: float = 120) -> str:
        return run(
            [self.kubectl, "--kubeconfig", self.kubeconfig, *args],
            what=what,
            timeout=timeout,
        )

    def kind_clusters(self) -> list[str]:
        """Every kind cluster on this engine."""
        out = run([self.kind, "get", "clusters"], what="kind get clusters", env=self.env())
        return [line for line in out.split() if line and " " not in line]

    def exists(self) -> bool:
        return self.name in self.kind_clusters()

    def nodes(self) -> list[str]:
        out = run(
            [self.kind, "get", "nodes", "--name", self.name], what="kind get nodes", env=self.env()
        )
        return out.split()

    def create(self, config: Path, image: str, log: Log, timeout: float = 600) -> None:
        """`kind create cluster` with the node image, then the pod network; waits for Ready."""
        if self.exists():
            log(f"[kind] cluster {self.name}: exists")
        else:
            retry = f"fluidos-sensors testbed kind delete {self.name}, then create it again"
            with step(log, f"kind create cluster {self.name} ({config.name})", retry):
                check_inotify(config)
                self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
                run(
                    [
                        self.kind,
                        "create",
                        "cluster",
                        "--name",
                        self.name,
                        "--config",
                        config,
                        "--image",
                        image,
                        "--kubeconfig",
                        self.kubeconfig,
                    ],
                    what="kind create cluster",
                    env=self.env(),
                    log_file=self.kubeconfig.with_suffix(".log"),
                    timeout=timeout,
                )
        retry = f"see `docker exec {self.name}-control-plane journalctl -u kubelet`"
        with step(log, f"pod network on {self.name}", retry):
            self.configure_pod_network()
        with step(log, f"nodes of {self.name} Ready", retry):
            self.kubectl_run(
                "wait",
                "--for=condition=Ready",
                "node",
                "--all",
                "--timeout=300s",
                what="kubectl wait nodes Ready",
                timeout=320,
            )

    def node_ip(self, node: str) -> str:
        return run(
            [
                self.docker,
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                node,
            ],
            what=f"docker inspect {node}",
            env=self.env(),
        ).split()[0]

    def configure_pod_network(self, timeout: float = 120) -> None:
        """Every node: a bridge CNI config on its pod CIDR, routes to the others' pod CIDRs."""
        nodes = self.nodes()
        cidrs: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while True:
            listed = json.loads(self.kubectl_run("get", "nodes", "-o", "json", what="get nodes"))
            cidrs = {
                item["metadata"]["name"]: item["spec"].get("podCIDR", "")
                for item in listed["items"]
            }
            if all(cidrs.get(node) for node in nodes):
                break
            if time.monotonic() > deadline:
                raise StepFailed(f"nodes without a pod CIDR after {timeout}s: {cidrs}")
            time.sleep(1)
        ips = {node: self.node_ip(node) for node in nodes}
        for node in nodes:
            run(
                [
                    self.docker,
                    "exec",
                    "-i",
                    node,
                    "sh",
                    "-c",
                    "mkdir -p /etc/cni/net.d && cat > /etc/cni/net.d/10-fluidos-bridge.conflist",
                ],
                what=f"CNI config on {node}",
                env=self.env(),
                input=_bridge_conflist(cidrs[node]).encode(),
            )
            for other in nodes:
                if other != node:
                    run(
                        [
                            self.docker,
                            "exec",
                            node,
                            "ip",
                            "route",
                            "replace",
                            cidrs[other],
                            "via",
                            ips[other],
                        ],
                        what=f"route on {node} to {other}'s pods",
                        env=self.env(),
                    )

    def delete(self, log: Log) -> None:
        with step(log, f"kind delete cluster {self.name}", "docker rm -f its node containers"):
            run(
                [
                    self.kind,
                    "delete",
                    "cluster",
                    "--name",
                    self.name,
                    "--kubeconfig",
                    self.kubeconfig,
                ],
                what="kind delete cluster",
                env=self.env(),
            )
            self.kubeconfig.unlink(missing_ok=True)


def remove_network(engine: Engine, log: Log) -> None:
    """Remove kind's docker network when no container uses it any more (kind leaves it)."""
    docker = shutil.which("docker") or "docker"
    proc = subprocess.run(
        [docker, "network", "inspect", NETWORK], env=engine.env(), capture_output=True, check=False
    )
    if proc.returncode != 0:
        return
    if json.loads(proc.stdout)[0].get("Containers"):
        log(f"[kind] docker network {NETWORK} still in use; kept")
        return
    run([docker, "network", "rm", NETWORK], what=f"docker network rm {NETWORK}", env=engine.env())
    log(f"[kind] docker network {NETWORK} removed")


def smoke(cluster: Cluster, image_ref: str, log: Log) -> str:
    """A pod runs on the cluster: CoreDNS Ready (pod network and service routing work) and a
    pod of a node-local image runs to completion; returns that pod's output."""
    retry = f"kubectl --kubeconfig {cluster.kubeconfig} get pods -A; describe the failing pod"
    with step(log, "CoreDNS pods Ready", retry):
        # All replicas available: the pod network and the service routing to the API work.
        cluster.kubectl_run(
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/coredns",
            "--timeout=300s",
            what="kubectl rollout status coredns",
            timeout=320,
        )
    with step(log, "a pod runs to completion", retry):
        cluster.kubectl_run(
            "delete",
            "pod",
            "fluidos-smoke",
            "--ignore-not-found",
            "--wait",
            what="kubectl delete pod",
        )
        cluster.kubectl_run(
            "run",
            "fluidos-smoke",
            "--restart=Never",
            f"--image={image_ref}",
            "--image-pull-policy=Never",
            "--command",
            "--",
            "etcd",
            "--version",
            what="kubectl run",
        )
        cluster.kubectl_run(
            "wait",
            "--for=jsonpath={.status.phase}=Succeeded",
            "pod/fluidos-smoke",
            "--timeout=180s",
            what="kubectl wait pod Succeeded",
            timeout=200,
        )
        output = cluster.kubectl_run("logs", "fluidos-smoke", what="kubectl logs")
        cluster.kubectl_run("delete", "pod", "fluidos-smoke", "--wait", what="kubectl delete")
    return output


# kube-proxy's image carries the Debian userland (curl, getent): the probe pods run it.
PROBE_IMAGE = f"registry.k8s.io/kube-proxy:{binaries.KUBERNETES_VERSION}"


def check_network(cluster: Cluster, log: Log, timeout: float = 180) -> list[str]:
    """From a probe pod on every node: CoreDNS's health endpoint by pod IP (pod-to-pod across
    nodes), the API server through its service IP (kube-proxy), a name through cluster DNS.
    Returns one line per check; raises on the first failure. The probes are deleted."""
    retry = f"kubectl --kubeconfig {cluster.kubeconfig} get pods -o wide; see the failed check"
    results = []
    nodes = cluster.nodes()
    probes = {node: f"fluidos-probe-{index}" for index, node in enumerate(nodes)}
    try:
        with step(log, f"network checks from {len(nodes)} node(s) of {cluster.name}", retry):
            for node, pod in probes.items():
                overrides = json.dumps({"spec": {"nodeName": node}})
                cluster.kubectl_run(
                    "run",
                    pod,
                    "--restart=Never",
                    f"--image={PROBE_IMAGE}",
                    "--image-pull-policy=Never",
                    f"--overrides={overrides}",
                    "--command",
                    "--",
                    "sleep",
                    "3600",
                    what=f"probe pod on {node}",
                )
            cluster.kubectl_run(
                "wait",
                "--for=condition=Ready",
                *(f"pod/{p}" for p in probes.values()),
                f"--timeout={int(timeout)}s",
                what="probe pods Ready",
                timeout=timeout + 20,
            )
            dns_pods = json.loads(
                cluster.kubectl_run(
                    "-n",
                    "kube-system",
                    "get",
                    "pods",
                    "-l",
                    "k8s-app=kube-dns",
                    "-o",
                    "json",
                    what="list CoreDNS pods",
                )
            )["items"]
            targets = [(i["spec"]["nodeName"], i["status"]["podIP"]) for i in dns_pods]
            for node, pod in probes.items():
                for dns_node, ip in targets:
                    out = cluster.kubectl_run(
                        "exec",
                        pod,
                        "--",
                        "curl",
                        "-s",
                        "-m",
                        "5",
                        f"http://{ip}:8080/health",
                        what=f"{node} -> CoreDNS {ip} on {dns_node}",
                    )
                    results.append(f"{node} -> CoreDNS pod {ip} ({dns_node}): {out.strip()}")
                out = cluster.kubectl_run(
                    "exec",
                    pod,
                    "--",
                    "curl",
                    "-sk",
                    "-m",
                    "5",
                    "https://kubernetes.default/livez",
                    what=f"{node} -> API server service",
                )
                results.append(f"{node} -> https://kubernetes.default/livez: {out.strip()}")
    finally:
        cluster.kubectl_run(
            "delete",
            "pod",
            "--ignore-not-found",
            "--wait=false",
            *probes.values(),
            what="delete probe pods",
        )
    return results
