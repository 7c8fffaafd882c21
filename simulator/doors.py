"""Door and lock model of one cabinet door, driven by an explicit clock.

The lock is an electric strike that latches by itself. A pulse on its coil
releases it for the pulse's duration. If the door was opened meanwhile, the lock
stays released until the door closes and then latches again. A jammed lock does
not release when pulsed, and a lock with a failing latch does not latch when the
door closes. Both faults put the lock in state FAULT.
"""

from dataclasses import dataclass

from firmware_protocol.messages import DoorPosition, LockFaultCode, LockState
from simulator.errors import ActionRejectedError

# The firmware reads the lock's position switch this long after a pulse starts,
# and reports a jam if the strike has not moved by then.
LOCK_SENSE_S = 0.05


@dataclass(frozen=True, slots=True)
class DoorOpenedChange:
    """The door opened while the lock was released by the unlock with ``token``."""

    at: float
    door: int
    token: int


@dataclass(frozen=True, slots=True)
class DoorClosedChange:
    at: float
    door: int
    open_s: float


@dataclass(frozen=True, slots=True)
class DoorForcedChange:
    """The door opened although no pulse had released the lock."""

    at: float
    door: int


@dataclass(frozen=True, slots=True)
class LockFaultChange:
    at: float
    door: int
    fault: LockFaultCode


DoorChange = DoorOpenedChange | DoorClosedChange | DoorForcedChange | LockFaultChange


class LockBusyError(Exception):
    """A pulse is already running on this door's lock."""


class DoorUnit:
    """One door with its lock; every method returns the changes the firmware detects."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.lock_state = LockState.LOCKED
        self.lock_fault: LockFaultCode | None = None
        self.position = DoorPosition.CLOSED
        # Token of the last unlock whose pulse reached the coil, 0 before the first.
        self.last_token = 0
        self.pulse_count = 0
        self.jammed = False
        self.latch_fails = False
        self.pulse_end: float | None = None
        self.opened_at: float | None = None
        self._jam_check_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self.position is DoorPosition.OPEN

    def pulse(self, now: float, duration_s: float, token: int) -> list[DoorChange]:
        """Energize the coil for ``duration_s``; raises ``LockBusyError`` if a pulse is running.

        Returns the changes that were due before ``now``.
        """
        changes = self.update(now)
        if self.pulse_end is not None:
            raise LockBusyError(f"door {self.index}: a pulse runs until {self.pulse_end:.3f}")
        self.pulse_count += 1
        self.last_token = token
        self.pulse_end = now + duration_s
        if self.jammed:
            self._jam_check_at = now + min(LOCK_SENSE_S, duration_s)
            return changes
        self.lock_state = LockState.RELEASED
        self.lock_fault = None
        return changes

    def update(self, now: float) -> list[DoorChange]:
        """Apply the pulse end and the jam check that are due by ``now``."""
        changes: list[DoorChange] = []
        if self._jam_check_at is not None and now >= self._jam_check_at:
            check_time = self._jam_check_at
            self._jam_check_at = None
            if self.jammed:
                self.lock_state = LockState.FAULT
                self.lock_fault = LockFaultCode.JAMMED
                changes.append(LockFaultChange(check_time, self.index, LockFaultCode.JAMMED))
        if self.pulse_end is not None and now >= self.pulse_end:
            end = self.pulse_end
            self.pulse_end = None
            if self.lock_state is LockState.RELEASED and not self.is_open:
                changes += self._latch(end)
        return changes

    def next_deadline(self) -> float | None:
        deadlines = [t for t in (self.pulse_end, self._jam_check_at) if t is not None]
        return min(deadlines, default=None)

    def open(self, now: float) -> list[DoorChange]:
        """Open the door as a person does: possible only while the lock does not hold it."""
        changes = self.update(now)
        if self.is_open:
            raise ActionRejectedError(f"door {self.index} is already open")
        if self.lock_state is LockState.RELEASED:
            self._set_open(now)
            return [*changes, DoorOpenedChange(now, self.index, self.last_token)]
        if self.lock_fault is LockFaultCode.NOT_LATCHED:
            # Nothing holds the door, but no unlock allowed this opening either.
            self._set_open(now)
            return [*changes, DoorForcedChange(now, self.index)]
        if self.lock_fault is LockFaultCode.JAMMED:
            raise ActionRejectedError(f"door {self.index} stays shut: its lock is jammed")
        raise ActionRejectedError(
            f"door {self.index} is locked; the board must pulse its lock (Unlock) first"
        )

    def force(self, now: float) -> list[DoorChange]:
        """Pull the door open against a latched lock; a released door just opens."""
        changes = self.update(now)
        if self.is_open:
            raise ActionRejectedError(f"door {self.index} is already open")
        if self.lock_state is LockState.RELEASED:
            return [*changes, *self.open(now)]
        self._set_open(now)
        return [*changes, DoorForcedChange(now, self.index)]

    def close(self, now: float) -> list[DoorChange]:
        changes = self.update(now)
        if not self.is_open:
            raise ActionRejectedError(f"door {self.index} is already closed")
        opened_at = self.opened_at if self.opened_at is not None else now
        self.position = DoorPosition.CLOSED
        self.opened_at = None
        changes.append(DoorClosedChange(now, self.index, now - opened_at))
        if self.lock_state is LockState.RELEASED and self.pulse_end is None:
            changes += self._latch(now)
        return changes

    def set_jammed(self, jammed: bool) -> None:
        """Switch the jam fault; clearing it leaves the lock latched and healthy."""
        self.jammed = jammed
        if not jammed and self.lock_fault is LockFaultCode.JAMMED:
            self.lock_state = LockState.LOCKED
            self.lock_fault = None

    def set_latch_fails(self, latch_fails: bool) -> None:
        """Switch the latch fault; clearing it latches a closed door again."""
        self.latch_fails = latch_fails
        if not latch_fails and self.lock_fault is LockFaultCode.NOT_LATCHED and not self.is_open:
            self.lock_state = LockState.LOCKED
            self.lock_fault = None

    def _set_open(self, now: float) -> None:
        self.position = DoorPosition.OPEN
        self.opened_at = now

    def _latch(self, at: float) -> list[DoorChange]:
        if self.latch_fails:
            self.lock_state = LockState.FAULT
            self.lock_fault = LockFaultCode.NOT_LATCHED
            return [LockFaultChange(at, self.index, LockFaultCode.NOT_LATCHED)]
        self.lock_state = LockState.LOCKED
        self.lock_fault = None
        return []
