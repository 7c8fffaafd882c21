"""Clocks that drive the simulation: the real monotonic clock, or a manual one for tests.

Every model takes the time as an argument, in seconds on one clock's scale, so the
same code runs against wall time in ``kiosk-sim cabinet`` and against a clock that
a test advances by hand.
"""

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Source of the simulation time in seconds; only differences are meaningful."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of simulation time pass."""
        ...


class MonotonicClock:
    """Real time from ``time.monotonic``."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that moves only when ``advance`` or ``sleep`` is called; thread-safe."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot move backwards: advance({seconds})")
        with self._lock:
            self._now += seconds
            return self._now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)
