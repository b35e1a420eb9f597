"""A route target's delivery state: the edge agent reports it in the SensorRoute's status,
and every reader (the TUI, `testbed status`) judges a target by it."""

from __future__ import annotations

from enum import StrEnum


class TargetState(StrEnum):
    """A route target's state as the edge agent reports it in the route's status."""

    IDLE = "Idle"
    DELIVERING = "Delivering"
    RETRYING = "Retrying"  # answers that may pass (5xx, 408, 429, no answer): retried
    REJECTING = "Rejecting"  # 4xx: the last batch was refused for good
    WAITING = "WaitingForCredentials"  # its Secret is missing: readings wait
    INVALID = "Invalid"  # the target itself is wrong (URL, format, auth): not delivered


FAILING_STATES = frozenset(
    {TargetState.RETRYING, TargetState.REJECTING, TargetState.WAITING, TargetState.INVALID}
)
"""The states in which a target is not getting its readings."""
