"""What `scripts/setup.sh` shows once the testbed is up: each cluster, as kubectl sees it."""

from __future__ import annotations

import subprocess
import sys

from testbed import binaries, manager, paths
from testbed.state import TestbedState

STEPS = {
    "provider": [
        ["get", "nodes", "-l", "node-role.fluidos.eu/sensors=true"],
        ["get", "crd"],
    ],
    "consumer": [["get", "nodes"]],
}


def main() -> int:
    state = TestbedState.read(paths.state_dir())
    if state is None or not state.running:
        print("no testbed running: start it with scripts/setup.sh", file=sys.stderr)
        return 1
    kubectl = binaries.resolve(binaries.KUBECTL, install=False)
    for cluster in state.clusters.values():
        for args in STEPS[cluster.role]:
            print(f"\n$ {manager.kubectl_command(cluster.kubeconfig, kubectl)} {' '.join(args)}")
            sys.stdout.flush()
            subprocess.run(
                [str(kubectl), "--kubeconfig", str(cluster.kubeconfig), *args], check=True
            )
    print("\nStop the testbed with: scripts/setup.sh --down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
