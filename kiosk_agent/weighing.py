"""Stable-weight detection and zero tracking for the shelves' load cells.

The board flags a reading stable by its own rule, but the agent decides for
itself before it trusts a weight with money: a shelf is stable when the samples
over the last ``STABLE_WINDOW_S`` seconds, at least ``MIN_STABLE_SAMPLES`` of
them covering at least half that time, span no more than ``STABLE_SPAN_MG``,
and the board has flagged at least the newest ``MIN_FLAGGED_SAMPLES`` of them
stable without clearing the flag since it set it. Its stable weight is the mean
of the flagged samples.

The window may start before the board sets its flag, because the flag already
covers the board's own window (0.5 s in the protocol) before the sample, and the
span check over the earlier samples confirms that the readings stopped moving.
So the agent takes a weight at the second flagged sample instead of waiting for
a window of flagged samples.

Load cells creep by a few grams over hours. While no session runs, zero
tracking folds each small step between consecutive stable weights of a shelf
into a drift that is subtracted from later readings, so stock estimates do not
wander. A step larger than ``ZERO_TRACK_STEP_MG`` is a real change (a forced
door, a restock) and is never absorbed.
"""

from collections import deque
from dataclasses import dataclass, field

# The board flags a reading stable only after its own window (0.5 s in the
# protocol), so the agent's window confirms it over a shorter span.
STABLE_WINDOW_S = 0.3
MIN_STABLE_SAMPLES = 3
# Two flagged samples in a row, so that a flag the board sets for a single reading
# at the edge of its band is not trusted.
MIN_FLAGGED_SAMPLES = 2
STABLE_SPAN_MG = 6_000
ZERO_TRACK_STEP_MG = 1_500


@dataclass
class ShelfWindow:
    """Recent samples of one shelf: (time in s, weight in mg, board's stable flag)."""

    samples: deque[tuple[float, int, bool]] = field(default_factory=deque)

    def add(self, now: float, weight_mg: int, board_stable: bool) -> None:
        self.samples.append((now, weight_mg, board_stable))
        while self.samples and self.samples[0][0] < now - 2 * STABLE_WINDOW_S:
            self.samples.popleft()

    def stable_weight(self, now: float) -> int | None:
        """Return the mean of the window's flagged samples if the shelf is stable, else None."""
        window = [s for s in self.samples if s[0] >= now - STABLE_WINDOW_S]
        if len(window) < MIN_STABLE_SAMPLES or window[-1][0] - window[0][0] < STABLE_WINDOW_S / 2:
            return None
        weights = [weight for _, weight, _ in window]
        if max(weights) - min(weights) > STABLE_SPAN_MG:
            return None
        flags = [stable for _, _, stable in window]
        # Index of the first sample after the newest one without the board's flag.
        first_flagged = max((i + 1 for i, stable in enumerate(flags) if not stable), default=0)
        if any(flags[:first_flagged]):
            # The board cleared its flag after setting it, so the shelf moved again.
            return None
        flagged = weights[first_flagged:]
        if len(flagged) < MIN_FLAGGED_SAMPLES:
            return None
        return round(sum(flagged) / len(flagged))

    @property
    def last_sample_at(self) -> float | None:
        return self.samples[-1][0] if self.samples else None

    def clear(self) -> None:
        self.samples.clear()


@dataclass
class ZeroTracker:
    """Slow drift of one shelf, learned from stable weights while it is idle."""

    drift_mg: int = 0
    last_mg: int | None = None

    def update(self, stable_mg: int, *, idle: bool) -> None:
        if self.last_mg is not None and idle:
            step = stable_mg - self.last_mg
            if abs(step) <= ZERO_TRACK_STEP_MG:
                self.drift_mg += step
        self.last_mg = stable_mg

    def corrected(self, weight_mg: int) -> int:
        return weight_mg - self.drift_mg
