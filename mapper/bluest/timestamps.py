"""Device time from BlueST's wrapping 10 ms tick counter."""

from __future__ import annotations

TICK_SECONDS = 0.01
TICK_WRAP = 1 << 16
"""The uint16 counter wraps every 655.36 s."""


class TimestampUnwrapper:
    """Turns one characteristic's raw uint16 ticks into monotonic device seconds.

    Use one instance per characteristic and per connection: boards reset their counter
    on reboot, and characteristics are not guaranteed to share one counter.
    """

    def __init__(self) -> None:
        self._last_raw: int | None = None
        self._ticks = 0
        self._last_received: float | None = None

    def unwrap(self, raw: int, received_at: float | None = None) -> float:
        """Device time in seconds for `raw` ticks.

        A counter that went backwards wrapped once. If notifications stop for longer than
        one wrap period, ticks alone cannot tell how many wraps were missed; pass the
        host's monotonic `received_at` (seconds) and the gap is counted from it.
        """
        if not 0 <= raw < TICK_WRAP:
            raise ValueError(f"raw timestamp must be a uint16, got {raw}")
        if self._last_raw is None:
            self._ticks = raw
        else:
            step = (raw - self._last_raw) % TICK_WRAP
            if received_at is not None and self._last_received is not None:
                elapsed_ticks = (received_at - self._last_received) / TICK_SECONDS
                # Whole wraps that fit in the host-measured gap beyond the visible step.
                missed = round((elapsed_ticks - step) / TICK_WRAP)
                step += max(0, missed) * TICK_WRAP
            self._ticks += step
        self._last_raw = raw
        if received_at is not None:
            self._last_received = received_at
        return self._ticks * TICK_SECONDS

    def reset(self) -> None:
        """Forget history, e.g. after a reconnect (the board may have rebooted)."""
        self._last_raw = None
        self._ticks = 0
        self._last_received = None
