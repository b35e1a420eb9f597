"""Capped exponential backoff with jitter: BLE, broker and API reconnects, delivery retries."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays that double (by `factor`) from `initial` up to `cap` seconds.

    `jitter` spreads each delay by up to that fraction either way, so many boards that
    dropped together do not reconnect in lockstep.
    """

    def __init__(
        self,
        initial: float = 0.5,
        cap: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.1,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0 or cap < initial or factor < 1 or not 0 <= jitter < 1:
            raise ValueError(
                f"backoff needs 0 < initial <= cap, factor >= 1 and 0 <= jitter < 1; got "
                f"initial={initial}, cap={cap}, factor={factor}, jitter={jitter}"
            )
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rng = rng
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt; each call counts one failed attempt."""
        # The exponent stops growing long after the cap is reached: no float overflow.
        base = min(self.cap, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        spread = base * self.jitter * (2 * self._rng() - 1)
        return max(0.0, min(self.cap, base + spread))

    def reset(self) -> None:
        """Start again from `initial` (after a connection proved stable)."""
        self.attempts = 0


def backoff_schedule(initial: float, cap: float, attempts: int, factor: float = 2.0) -> list[float]:
    """The first `attempts` delays of a Backoff without jitter."""
    backoff = Backoff(initial, cap, factor=factor, jitter=0.0)
    return [backoff.next() for _ in range(attempts)]
