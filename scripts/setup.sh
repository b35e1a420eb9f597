#!/usr/bin/env bash
# Build the local multi-cluster testbed and run the demo.
#   scripts/setup.sh [--providers M] [--consumers N] [--edge-workers K]   start (or report) it
#   scripts/setup.sh --status                                             show what runs
#   scripts/setup.sh --down                                               stop it, free its ports
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh

case "${1:-}" in
  --down) fs_bootstrap ""; exec .venv/bin/fluidos-sensors testbed down ;;
  --status) fs_bootstrap ""; exec .venv/bin/fluidos-sensors testbed status ;;
  -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
esac

fs_bootstrap ""
.venv/bin/fluidos-sensors testbed up "$@"
exec .venv/bin/python -m testbed.demo
