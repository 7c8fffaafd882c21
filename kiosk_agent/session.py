"""The purchase session as a state machine with no I/O.

One session runs at a time on a cabinet::

    idle -> authorized -> unlocked -> door_open -> settling -> settled -> recorded
                 |            |           |
                 +------------+-----------+--> cancelled / faulted

``authorized``  a verified unlock command arrived; the agent records stable
                shelf weights (the baseline) before anything moves
``unlocked``    the lock pulsed; the student has ``OPEN_TIMEOUT_S`` to open the door
``door_open``   the student is taking goods; past ``LEFT_OPEN_ALARM_S`` an alarm is
                raised, and the session settles whenever the door finally closes
``settling``    the door closed; the agent waits for stable weights
``settled``     the weight changes were decoded into items
``recorded``    the sale was written to the outbox, in the transaction that ends
                the session
``cancelled``   nothing was sold: the lock was refused or the door was never
                opened; the hold is released by a sale record with no lines
``faulted``     the lock jammed: the cabinet stops selling and never unlocks on
                its own again until an operator clears the fault

The owner feeds ``SessionInput`` values to ``Session.apply`` and performs the
side effects itself. Every state and the data needed to finish the session
(baseline weights, stock, timestamps) is serialisable, so a restarted agent
resumes from the saved session and the present weights.
"""

import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from kiosk_agent.decoding import KnownPack

# How long the student has to open the door after the lock pulses.
OPEN_TIMEOUT_S = 30.0
# A door open longer than this raises a door_left_open alarm.
LEFT_OPEN_ALARM_S = 120.0
# Longest wait for stable weights after the door closes; past it the session
# settles with the shelves that never stabilised treated as faulted.
SETTLE_TIMEOUT_S = 20.0


class SessionState(enum.StrEnum):
    IDLE = "idle"
    AUTHORIZED = "authorized"
    UNLOCKED = "unlocked"
    DOOR_OPEN = "door_open"
    SETTLING = "settling"
    SETTLED = "settled"
    RECORDED = "recorded"
    CANCELLED = "cancelled"
    FAULTED = "faulted"


class SessionInput(enum.StrEnum):
    AUTHORIZE = "authorize"
    UNLOCK_CONFIRMED = "unlock_confirmed"
    UNLOCK_FAILED = "unlock_failed"
    LOCK_JAMMED = "lock_jammed"
    DOOR_OPENED = "door_opened"
    OPEN_TIMEOUT = "open_timeout"
    DOOR_CLOSED = "door_closed"
    WEIGHTS_STABLE = "weights_stable"
    SETTLE_TIMEOUT = "settle_timeout"
    RECORD = "record"
    FINISH = "finish"
    CLEAR_FAULT = "clear_fault"


S = SessionState
E = SessionInput

TRANSITIONS: dict[tuple[SessionState, SessionInput], SessionState] = {
    (S.IDLE, E.AUTHORIZE): S.AUTHORIZED,
    (S.AUTHORIZED, E.UNLOCK_CONFIRMED): S.UNLOCKED,
    (S.AUTHORIZED, E.UNLOCK_FAILED): S.CANCELLED,
    (S.AUTHORIZED, E.LOCK_JAMMED): S.FAULTED,
    (S.UNLOCKED, E.DOOR_OPENED): S.DOOR_OPEN,
    (S.UNLOCKED, E.OPEN_TIMEOUT): S.CANCELLED,
    (S.UNLOCKED, E.LOCK_JAMMED): S.FAULTED,
    # A door that opens and closes between two polls reports both at once.
    (S.UNLOCKED, E.DOOR_CLOSED): S.SETTLING,
    (S.DOOR_OPEN, E.DOOR_CLOSED): S.SETTLING,
    (S.SETTLING, E.WEIGHTS_STABLE): S.SETTLED,
    (S.SETTLING, E.SETTLE_TIMEOUT): S.SETTLED,
    (S.SETTLED, E.RECORD): S.RECORDED,
    (S.CANCELLED, E.RECORD): S.RECORDED,
    (S.FAULTED, E.RECORD): S.FAULTED,
    (S.RECORDED, E.FINISH): S.IDLE,
    (S.FAULTED, E.CLEAR_FAULT): S.IDLE,
}

# States in which the door may be open or the shelves may change.
ACTIVE_STATES = frozenset({S.UNLOCKED, S.DOOR_OPEN, S.SETTLING})


class SessionError(Exception):
    """An input that the session's current state does not allow."""

    def __init__(self, kiosk_id: str, session_id: str, state: SessionState, event: SessionInput):
        super().__init__(
            f"cabinet {kiosk_id}, session {session_id or '-'}: "
            f"{event.value} is not allowed in state {state.value}"
        )
        self.state = state
        self.event = event


@dataclass
class Session:
    """One purchase session's state and the facts needed to finish it."""

    kiosk_id: str
    state: SessionState = S.IDLE
    session_id: str = ""
    command_id: str = ""
    door: int = 0
    mode: str = "purchase"
    unlock_token: int = 0
    authorized_at: datetime | None = None
    unlocked_at: datetime | None = None
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    # Shelf -> stable weight in milligrams before the door opened.
    baseline_mg: dict[int, int] = field(default_factory=dict)
    # Shelf -> product -> packs on the shelf before the door opened.
    stock: dict[int, dict[str, int]] = field(default_factory=dict)
    # Shelf -> the packs among ``stock`` whose own weight is known.
    known_packs: dict[int, list[KnownPack]] = field(default_factory=dict)
    planogram_version: int = 0
    outcome: str = ""
    left_open_alarmed: bool = False
    history: list[str] = field(default_factory=list)

    def apply(self, event: SessionInput) -> SessionState:
        """Move to the state the table gives for ``event``; raises ``SessionError`` otherwise."""
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            raise SessionError(self.kiosk_id, self.session_id, self.state, event)
        self.history.append(f"{self.state.value} --{event.value}--> {target.value}")
        self.state = target
        return target

    def can_apply(self, event: SessionInput) -> bool:
        return (self.state, event) in TRANSITIONS

    @property
    def busy(self) -> bool:
        """True while a session is under way, so another unlock must be rejected."""
        return self.state not in (S.IDLE, S.FAULTED)

    def reset(self) -> None:
        """Forget the finished session and return to idle, keeping the cabinet id."""
        fresh = Session(self.kiosk_id)
        self.__dict__.update(fresh.__dict__)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("authorized_at", "unlocked_at", "opened_at", "closed_at"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        data["baseline_mg"] = {str(k): v for k, v in self.baseline_mg.items()}
        data["stock"] = {str(k): v for k, v in self.stock.items()}
        data["known_packs"] = {
            str(k): [asdict(pack) for pack in v] for k, v in self.known_packs.items()
        }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Session":
        values = dict(data)
        values["state"] = SessionState(values["state"])
        for key in ("authorized_at", "unlocked_at", "opened_at", "closed_at"):
            raw = values.get(key)
            values[key] = datetime.fromisoformat(raw) if raw else None
        values["baseline_mg"] = {int(k): int(v) for k, v in values["baseline_mg"].items()}
        values["stock"] = {int(k): dict(v) for k, v in values["stock"].items()}
        # Sessions saved by agents before known packs existed have none.
        values["known_packs"] = {
            int(k): [KnownPack(**pack) for pack in v]
            for k, v in values.get("known_packs", {}).items()
        }
        return cls(**values)
