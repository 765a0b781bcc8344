"""The simulated clock: simulated time may run faster than real time, to fill history quickly."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class SimClock:
    """Simulated epoch seconds: `start` plus `speed` times the real seconds since the clock began.

    With `catch_up` (the default) the clock never runs ahead of real time: once simulated time
    has caught up with the wall clock it follows the wall clock, so a fleet fills its history
    fast and then reports live. `wall` is the real clock (epoch seconds); tests may pass their own.
    """

    start: float
    speed: float = 1.0
    catch_up: bool = True
    wall: Callable[[], float] = field(default=time.time, repr=False)
    _began: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("speed must be positive")
        self._began = self.wall()

    @classmethod
    def history(
        cls, span_s: float, real_s: float, wall: Callable[[], float] = time.time
    ) -> SimClock:
        """A clock that covers the last `span_s` simulated seconds in `real_s` real seconds."""
        speed = max(1.0, span_s / real_s)
        now = wall()
        # Started so that simulated time reaches the wall clock exactly when `real_s` is over.
        return cls(now - span_s + real_s, speed, wall=wall)

    def now(self) -> float:
        """Simulated time (epoch seconds)."""
        real = self.wall()
        simulated = self.start + (real - self._began) * self.speed
        if self.catch_up and simulated > real and self.start <= self._began:
            return real
        return simulated

    def real_delay(self, simulated_s: float) -> float:
        """How many real seconds pass while `simulated_s` simulated seconds do (now)."""
        if self.catch_up and self.now() >= self.wall() - 1e-3 and self.start <= self._began:
            return simulated_s
        return simulated_s / self.speed
