"""The purchase session state machine: the main path, failure paths and persistence."""

import json
from datetime import UTC, datetime

import pytest

from kiosk_agent.decoding import KnownPack
from kiosk_agent.session import (
    TRANSITIONS,
    Session,
    SessionError,
    SessionInput,
    SessionState,
)

E = SessionInput
S = SessionState


def _run(session: Session, *events: SessionInput) -> list[SessionState]:
    return [session.apply(event) for event in events]


def test_purchase_path_reaches_recorded_then_idle() -> None:
    session = Session("AH-1")

    states = _run(
        session,
        E.AUTHORIZE,
        E.UNLOCK_CONFIRMED,
        E.DOOR_OPENED,
        E.DOOR_CLOSED,
        E.WEIGHTS_STABLE,
        E.RECORD,
        E.FINISH,
    )

    assert states == [
        S.AUTHORIZED,
        S.UNLOCKED,
        S.DOOR_OPEN,
        S.SETTLING,
        S.SETTLED,
        S.RECORDED,
        S.IDLE,
    ]
    assert len(session.history) == 7


@pytest.mark.parametrize(
    ("events", "final"),
    [
        ((E.AUTHORIZE, E.UNLOCK_FAILED), S.CANCELLED),
        ((E.AUTHORIZE, E.UNLOCK_CONFIRMED, E.OPEN_TIMEOUT), S.CANCELLED),
        ((E.AUTHORIZE, E.LOCK_JAMMED), S.FAULTED),
        ((E.AUTHORIZE, E.UNLOCK_CONFIRMED, E.LOCK_JAMMED), S.FAULTED),
        ((E.AUTHORIZE, E.UNLOCK_CONFIRMED, E.DOOR_CLOSED), S.SETTLING),
        (
            (E.AUTHORIZE, E.UNLOCK_CONFIRMED, E.DOOR_OPENED, E.DOOR_CLOSED, E.SETTLE_TIMEOUT),
            S.SETTLED,
        ),
    ],
    ids=["lock_refused", "door_not_opened", "jam_before", "jam_after", "fast_door", "never_stable"],
)
def test_failure_paths(events: tuple[SessionInput, ...], final: SessionState) -> None:
    session = Session("AH-1")

    _run(session, *events)

    assert session.state is final


def test_cancelled_session_still_records_a_result() -> None:
    session = Session("AH-1")
    _run(session, E.AUTHORIZE, E.UNLOCK_FAILED)

    assert session.apply(E.RECORD) is S.RECORDED


def test_faulted_cabinet_stays_faulted_until_cleared() -> None:
    session = Session("AH-1")
    _run(session, E.AUTHORIZE, E.LOCK_JAMMED, E.RECORD)

    assert session.state is S.FAULTED
    assert not session.can_apply(E.AUTHORIZE)
    assert session.apply(E.CLEAR_FAULT) is S.IDLE


def test_second_authorize_while_busy_raises() -> None:
    session = Session("AH-7", session_id="s-1")
    session.apply(E.AUTHORIZE)

    with pytest.raises(SessionError) as caught:
        session.apply(E.AUTHORIZE)

    assert caught.value.state is S.AUTHORIZED
    assert caught.value.event is E.AUTHORIZE
    assert "AH-7" in str(caught.value)
    assert "s-1" in str(caught.value)
    assert session.busy


def test_idle_accepts_only_authorize() -> None:
    from_idle = {event for (state, event) in TRANSITIONS if state is S.IDLE}

    assert from_idle == {E.AUTHORIZE}


def test_session_round_trips_through_json() -> None:
    session = Session(
        "AH-1",
        session_id="s-9",
        unlock_token=77,
        authorized_at=datetime(2026, 12, 4, 8, 0, tzinfo=UTC),
        baseline_mg={0: 1_250_000, 1: 480_000},
        stock={0: {"tea": 5}, 1: {"crisps": 4, "tea": 1}},
        known_packs={1: [KnownPack("tea", 253_400, 1_394.3)]},
    )
    _run(session, E.AUTHORIZE, E.UNLOCK_CONFIRMED)

    restored = Session.from_json(json.loads(json.dumps(session.to_json())))

    assert restored == session


def test_session_saved_without_known_packs_loads() -> None:
    session = Session("AH-1", session_id="s-9", stock={0: {"tea": 5}})
    _run(session, E.AUTHORIZE)
    saved = session.to_json()
    # Agents saved sessions without this key before they kept known packs.
    del saved["known_packs"]

    restored = Session.from_json(saved)

    assert restored.known_packs == {}
    assert restored.stock == {0: {"tea": 5}}


def test_reset_keeps_cabinet_id() -> None:
    session = Session("AH-1", session_id="s-2")
    _run(session, E.AUTHORIZE, E.UNLOCK_FAILED, E.RECORD, E.FINISH)

    session.reset()

    assert session == Session("AH-1")
