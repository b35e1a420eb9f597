#!/usr/bin/env bash
# The whole test suite: lint, unit tests and integration tests on a real testbed of its own that
# the tests start and stop (a testbed scripts/setup.sh runs is left alone). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh

fs_bootstrap "[test]"
# Obtain every binary first, so a missing one fails here with what to install, not mid-suite.
.venv/bin/fluidos-sensors testbed binaries
.venv/bin/fluidos-sensors testbed binaries --kind  # the KIND test's node image (tests/kind)
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy  # what it checks and how: [tool.mypy] in pyproject.toml
exec .venv/bin/pytest "$@"
