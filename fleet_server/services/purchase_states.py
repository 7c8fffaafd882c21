"""State machine of a purchase session, as a table of (state, event) -> next state.

Theory of operation: the API creates a session in ``created`` with a payment hold, and moves
it to ``unlock_sent`` once the broker accepted the unlock command. The cabinet then reports
its progress as ``session_state`` events (``unlocked``, ``door_open``, ``settling``) and
finally one sale, which settles the payment and ends the session in ``completed`` or
``cancelled``. Events and the sale travel on different topics and may be handled by
different ingest workers, so they can arrive out of order: the table lets any later
progress state follow any earlier one, and a sale settle a session in any active state.

``failed`` means no sale will come: the command never reached the broker, or the cabinet
rejected it before starting. ``expired`` means no sale came within the timeout. The hold of
an expired session stays, because the cabinet's outbox still delivers the sale later, and
that sale settles the session as usual. An operator may instead release the hold.
"""

import enum

from fleet_server.models import PurchaseState

S = PurchaseState


class PurchaseEvent(enum.StrEnum):
    UNLOCK_PUBLISHED = "unlock_published"  # the broker accepted the unlock command
    PUBLISH_FAILED = "publish_failed"
    CABINET_UNLOCKED = "cabinet_unlocked"  # session_state event "unlocked"
    DOOR_OPENED = "door_opened"  # session_state event "door_open"
    SETTLING = "settling"  # session_state event "settling"
    COMMAND_REJECTED = "command_rejected"  # rejected before any session started
    SALE_CHARGED = "sale_charged"  # sale with outcome completed, nothing_taken, forced_open
    SALE_CANCELLED = "sale_cancelled"  # sale with outcome cancelled, door_not_opened, lock_fault
    TIMED_OUT = "timed_out"
    RELEASED_BY_STAFF = "released_by_staff"


E = PurchaseEvent

_BEFORE_UNLOCK = (S.CREATED, S.UNLOCK_SENT)
_ACTIVE = (S.CREATED, S.UNLOCK_SENT, S.UNLOCKED, S.DOOR_OPEN, S.SETTLING)

TRANSITIONS: dict[tuple[PurchaseState, PurchaseEvent], PurchaseState] = {
    (S.CREATED, E.UNLOCK_PUBLISHED): S.UNLOCK_SENT,
    (S.CREATED, E.PUBLISH_FAILED): S.FAILED,
    **{(state, E.CABINET_UNLOCKED): S.UNLOCKED for state in _BEFORE_UNLOCK},
    **{(state, E.DOOR_OPENED): S.DOOR_OPEN for state in (*_BEFORE_UNLOCK, S.UNLOCKED)},
    **{(state, E.SETTLING): S.SETTLING for state in (*_BEFORE_UNLOCK, S.UNLOCKED, S.DOOR_OPEN)},
    **{(state, E.COMMAND_REJECTED): S.FAILED for state in _BEFORE_UNLOCK},
    **{(state, E.SALE_CHARGED): S.COMPLETED for state in (*_ACTIVE, S.EXPIRED)},
    **{(state, E.SALE_CANCELLED): S.CANCELLED for state in (*_ACTIVE, S.EXPIRED)},
    **{(state, E.TIMED_OUT): S.EXPIRED for state in _ACTIVE},
    (S.EXPIRED, E.RELEASED_BY_STAFF): S.CANCELLED,
}

TERMINAL_STATES = frozenset({S.COMPLETED, S.CANCELLED, S.FAILED})

# session_state event detail.state -> event
CABINET_PROGRESS = {
    "unlocked": E.CABINET_UNLOCKED,
    "door_open": E.DOOR_OPENED,
    "settling": E.SETTLING,
}


class IllegalTransitionError(Exception):
    """An event that the session's current state does not accept."""

    def __init__(self, state: PurchaseState, event: PurchaseEvent, session_id: object) -> None:
        super().__init__(
            f"purchase session {session_id} in state {state.value} cannot take event {event.value}"
        )
        self.state = state
        self.event = event


def next_state(state: PurchaseState, event: PurchaseEvent, *, session_id: object) -> PurchaseState:
    """Return the state after ``event``, or raise IllegalTransitionError."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransitionError(state, event, session_id) from None
