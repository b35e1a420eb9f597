#!/usr/bin/env bash
# Build the multi-cluster testbed, start the whole system on it and run the demo.
#   scripts/setup.sh [--kind|--local] [--providers M] [--consumers N] [--edge-workers K] [--no-demo]
#                                          start (or find running) and run the seed's scenarios;
#                                          --kind: KIND clusters, the parts as pods (the chart);
#                                          --local: real etcd + kube-apiserver, parts as processes;
#                                          default: --kind if this machine's Docker engine can
#                                          run privileged containers, else --local
#   scripts/setup.sh --status              every process and route target
#   scripts/setup.sh --check               the demo's requests still fulfilled, readings arriving
#   scripts/setup.sh --down                stop everything, free every port (KIND: delete the
#                                          clusters and the testbed's own Docker engine)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh

case "${1:-}" in
  --down) fs_bootstrap ""; exec .venv/bin/fluidos-sensors testbed down ;;
  --status) fs_bootstrap ""; exec .venv/bin/fluidos-sensors testbed status ;;
  --check) fs_bootstrap ""; exec .venv/bin/python -m testbed.demo --check ;;
  -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
esac

demo=()
up=()
for arg in "$@"; do
  if [ "$arg" = "--no-demo" ]; then demo+=(--no-demo); else up+=("$arg"); fi
done

started=$(date +%s)
fs_bootstrap ""
.venv/bin/fluidos-sensors testbed up "${up[@]}"
echo "testbed up after $(( $(date +%s) - started )) s"
status=0
.venv/bin/python -m testbed.demo "${demo[@]}" || status=$?
echo "setup.sh done after $(( $(date +%s) - started )) s"
exit $status
