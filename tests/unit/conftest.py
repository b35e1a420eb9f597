"""Hypothesis profiles for the fuzz tests (tests/unit/test_fuzz_*.py).

``ci`` (the default) bounds the run so the fuzz tests take seconds on 2 cores and stay
reproducible enough for CI: a fixed example budget per test, no deadline (a loaded machine
must not turn slowness into failures) and no example database written into the work tree.
``fuzz`` is for a long local hunt: ``HYPOTHESIS_PROFILE=fuzz .venv/bin/pytest tests/unit -k fuzz``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=20_000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
