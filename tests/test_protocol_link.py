"""The host link state machine, driven against the reference board link."""

import pytest

from firmware_protocol.codec import Packet, encode_packet
from firmware_protocol.errors import LinkStateError
from firmware_protocol.frame import Frame, encode_frame
from firmware_protocol.link import (
    TRANSITIONS,
    Aborted,
    EventReceived,
    FrameRejected,
    HostLink,
    LinkInput,
    LinkState,
    LinkTiming,
    Rejected,
    ReplyReceived,
    TimedOut,
    UnlockVerified,
)
from firmware_protocol.messages import (
    BoardStarted,
    DoorClosed,
    DoorOpened,
    ErrorCode,
    GetDoorState,
    Hello,
    ReadWeights,
    ResetCause,
    Tare,
    Unlock,
    UnlockReply,
    WeightsReply,
)
from link_pair import LinkPair

TIMEOUT_S = LinkTiming().reply_timeout_s(64)


def _drop_first(count: int):  # type: ignore[no-untyped-def]
    remaining = [count]

    def drop(data: bytes) -> bool:
        if remaining[0] > 0:
            remaining[0] -= 1
            return True
        return False

    return drop


def test_request_gets_its_reply() -> None:
    pair = LinkPair()

    request_id = pair.host.submit(ReadWeights(), pair.now)
    pair.pump()

    [outcome] = pair.take()
    assert isinstance(outcome, ReplyReceived)
    assert outcome.request_id == request_id
    assert isinstance(outcome.reply, WeightsReply)
    assert pair.host.state is LinkState.IDLE


def test_lost_reply_is_retransmitted_with_same_bytes() -> None:
    pair = LinkPair()
    sent: list[bytes] = []

    def record_and_drop_first(data: bytes) -> bool:
        sent.append(data)
        return len(sent) == 1

    pair.drop_to_board = record_and_drop_first
    pair.host.submit(ReadWeights(), pair.now)
    pair.pump()
    pair.advance(TIMEOUT_S)

    assert len(sent) == 2
    assert sent[0] == sent[1]
    assert isinstance(pair.take()[0], ReplyReceived)
    assert pair.host.stats.retransmits == 1


def test_retransmitted_unlock_pulses_once() -> None:
    pair = LinkPair()
    pair.drop_to_host = _drop_first(2)

    pair.host.submit(Unlock(0, 500, token=77), pair.now)
    pair.pump()
    pair.advance(3 * TIMEOUT_S)

    [outcome] = pair.take()
    assert isinstance(outcome, ReplyReceived)
    assert outcome.reply == UnlockReply(0, 77)
    assert pair.board_hw.pulses == [77]
    assert pair.board.stats.repeated_requests == 2


def test_unlock_with_lost_replies_is_verified_executed() -> None:
    pair = LinkPair()
    pair.drop_to_host = _drop_first(4)

    request_id = pair.host.submit(Unlock(1, 500, token=1234), pair.now)
    pair.pump()
    pair.advance(5 * TIMEOUT_S)

    [outcome] = pair.take()
    assert isinstance(outcome, UnlockVerified)
    assert outcome.request_id == request_id
    assert outcome.executed is True
    assert outcome.status.last_token == 1234
    assert pair.board_hw.pulses == [1234]


def test_unlock_never_received_is_verified_not_executed() -> None:
    pair = LinkPair()
    pair.drop_to_board = _drop_first(4)

    pair.host.submit(Unlock(0, 500, token=99), pair.now)
    pair.pump()
    pair.advance(5 * TIMEOUT_S)

    [outcome] = pair.take()
    assert isinstance(outcome, UnlockVerified)
    assert outcome.executed is False
    assert pair.board_hw.pulses == []


def test_unlock_is_never_reissued_with_new_sequence_number() -> None:
    pair = LinkPair()
    unlock_frames: set[bytes] = set()

    def record(data: bytes) -> bool:
        if data[5] == Unlock.TYPE:
            unlock_frames.add(data)
        return True

    pair.drop_to_board = record
    pair.host.submit(Unlock(0, 500, token=5), pair.now)
    pair.pump()
    pair.advance(20 * TIMEOUT_S)

    [outcome] = pair.take()
    assert isinstance(outcome, TimedOut)
    assert outcome.effect_unknown is True
    assert outcome.attempts == 4
    assert len(unlock_frames) == 1


def test_read_times_out_after_retries() -> None:
    pair = LinkPair(timing=LinkTiming(retries=2))
    pair.drop_to_board = lambda data: True

    pair.host.submit(ReadWeights(), pair.now)
    pair.pump()
    pair.advance(10 * TIMEOUT_S)

    [outcome] = pair.take()
    assert isinstance(outcome, TimedOut)
    assert outcome.attempts == 3
    assert outcome.effect_unknown is False
    assert pair.host.state is LinkState.IDLE


def test_tare_timeout_marks_effect_unknown() -> None:
    pair = LinkPair()
    pair.drop_to_host = lambda data: True

    pair.host.submit(Tare(0), pair.now)
    pair.pump()
    pair.advance(10 * TIMEOUT_S)

    [outcome] = pair.take()
    assert isinstance(outcome, TimedOut)
    assert outcome.effect_unknown is True


def test_error_reply_becomes_rejected() -> None:
    pair = LinkPair()

    pair.host.submit(Unlock(5, 500, token=1), pair.now)
    pair.pump()

    [outcome] = pair.take()
    assert isinstance(outcome, Rejected)
    assert outcome.code is ErrorCode.BAD_ARGUMENT
    assert pair.board_hw.pulses == []


def test_queued_requests_run_in_order() -> None:
    pair = LinkPair()

    first = pair.host.submit(ReadWeights(), pair.now)
    second = pair.host.submit(GetDoorState(0), pair.now)
    third = pair.host.submit(Unlock(0, 500, 3), pair.now)
    pair.pump()

    outcomes = pair.take()
    assert [o.request_id for o in outcomes if isinstance(o, ReplyReceived)] == [
        first,
        second,
        third,
    ]


def test_stray_reply_is_dropped() -> None:
    host = HostLink(address=1)
    host.submit(ReadWeights(), 0.0)
    stray = encode_packet(Packet(1, 200, WeightsReply(())))

    assert host.receive(stray, 0.0) == []
    assert host.stats.stray_replies == 1
    assert host.state is LinkState.AWAITING_REPLY


def test_reply_of_wrong_type_is_dropped() -> None:
    host = HostLink(address=1)
    host.submit(ReadWeights(), 0.0)
    seq = host.data_to_send()[4]

    outcomes = host.receive(encode_packet(Packet(1, seq, UnlockReply(0, 1))), 0.0)

    assert outcomes == []
    assert host.stats.stray_replies == 1


def test_frame_for_other_board_is_ignored() -> None:
    host = HostLink(address=1)
    host.submit(ReadWeights(), 0.0)
    seq = host.data_to_send()[4]

    outcomes = host.receive(encode_packet(Packet(2, seq, WeightsReply(()))), 0.0)

    assert outcomes == []
    assert host.stats.foreign_frames == 1


def test_malformed_frame_is_reported() -> None:
    host = HostLink()

    [outcome] = host.receive(encode_frame(Frame(1, 3, 0x3E, b"")), 0.0)

    assert isinstance(outcome, FrameRejected)
    assert outcome.frame.type_code == 0x3E


def test_sequence_numbers_wrap_and_skip_zero() -> None:
    host = HostLink()
    seqs = []

    for _ in range(300):
        host.submit(ReadWeights(), 0.0)
        seq = host.data_to_send()[4]
        seqs.append(seq)
        host.receive(encode_packet(Packet(1, seq, WeightsReply(()))), 0.0)

    assert 0 not in seqs
    assert seqs[254:257] == [255, 1, 2]


def test_hello_uses_sequence_zero() -> None:
    host = HostLink()

    host.submit(Hello(1), 0.0)

    assert host.data_to_send()[4] == 0


def test_pushed_event_is_delivered_and_acknowledged() -> None:
    pair = LinkPair()

    pair.board.post_event(BoardStarted(1, ResetCause.POWER_ON), pair.now)
    pair.board.post_event(DoorOpened(2, 0, 55), pair.now)
    pair.pump()

    events = [o for o in pair.take() if isinstance(o, EventReceived)]
    assert [e.event for e in events] == [BoardStarted(1, ResetCause.POWER_ON), DoorOpened(2, 0, 55)]
    assert [e.seq for e in events] == [0, 1]
    assert pair.board.events_pending == 0


def test_event_with_lost_ack_is_delivered_once() -> None:
    pair = LinkPair()
    pair.board.post_event(BoardStarted(1, ResetCause.POWER_ON), pair.now)
    pair.pump()
    pair.take()
    # Lose every attempt of the acknowledgement, so the board must resend the event.
    pair.drop_to_board = _drop_first(1 + pair.host.timing.retries)

    pair.board.post_event(DoorClosed(5, 0, 3000), pair.now)
    pair.pump()
    pair.advance(1.0)

    events = [o for o in pair.take() if isinstance(o, EventReceived)]
    assert [e.event for e in events] == [DoorClosed(5, 0, 3000)]
    assert pair.host.stats.repeated_events == 1
    assert pair.board.events_pending == 0


def test_event_is_resent_until_acknowledged() -> None:
    pair = LinkPair()
    pair.drop_to_host = _drop_first(3)

    pair.board.post_event(BoardStarted(1, ResetCause.WATCHDOG), pair.now)
    pair.pump()
    pair.advance(1.0)

    events = [o for o in pair.take() if isinstance(o, EventReceived)]
    assert len(events) == 1
    assert pair.board.stats.events_sent == 4
    assert pair.board.events_pending == 0


def test_board_restart_event_is_always_delivered() -> None:
    pair = LinkPair()

    for uptime in (1, 2):
        pair.board = type(pair.board)(address=1, handler=pair.board_hw)
        pair.board.post_event(BoardStarted(uptime, ResetCause.POWER_ON), pair.now)
        pair.pump()

    events = [o.event for o in pair.take() if isinstance(o, EventReceived)]
    assert events == [BoardStarted(1, ResetCause.POWER_ON), BoardStarted(2, ResetCause.POWER_ON)]


def test_polled_event_is_delivered_and_acknowledged() -> None:
    pair = LinkPair(push_events=False)
    pair.board.post_event(DoorOpened(9, 0, 1), pair.now)

    pair.pump()
    assert pair.take() == []

    from firmware_protocol.messages import PollEvent

    pair.host.submit(PollEvent(), pair.now)
    pair.pump()

    outcomes = pair.take()
    assert EventReceived(0, DoorOpened(9, 0, 1)) in outcomes
    assert pair.board.events_pending == 0


def test_abort_reports_in_flight_and_queued() -> None:
    host = HostLink()
    sent = host.submit(Unlock(0, 500, 1), 0.0)
    queued = host.submit(ReadWeights(), 0.0)

    outcomes = host.abort()

    assert outcomes == [
        Aborted(sent, Unlock(0, 500, 1), was_sent=True),
        Aborted(queued, ReadWeights(), was_sent=False),
    ]
    assert host.state is LinkState.IDLE
    assert not host.busy
    assert host.data_to_send() == b""


def test_partial_frame_is_flushed_after_idle_gap() -> None:
    host = HostLink()
    host.submit(ReadWeights(), 0.0)
    seq = host.data_to_send()[4]
    reply = encode_packet(Packet(1, seq, WeightsReply(())))
    long_promise = bytes.fromhex("a55a0101098400")[:-1] + bytes((200,))
    from firmware_protocol.frame import header_check

    long_promise += bytes((header_check(1, 1, 9, 0x84, 200),))

    assert host.receive(long_promise + reply, 0.0) == []
    deadline = host.next_deadline()
    assert deadline is not None
    assert deadline <= host.timing.idle_gap_s

    [outcome] = host.poll(host.timing.idle_gap_s)
    assert isinstance(outcome, ReplyReceived)


def test_illegal_transition_names_state_event_and_board() -> None:
    host = HostLink(address=7)

    with pytest.raises(LinkStateError) as caught:
        host._transition(LinkInput.REPLY)

    assert caught.value.state == "idle"
    assert caught.value.event == "reply"
    assert caught.value.address == 7
    assert "0x07" in str(caught.value)


def test_transition_table_has_no_exit_from_idle_but_send() -> None:
    from_idle = {event for (state, event) in TRANSITIONS if state is LinkState.IDLE}

    assert from_idle == {LinkInput.SEND}


@pytest.mark.parametrize("baudrate", [9600, 115200])
def test_reply_timeout_covers_wire_time(baudrate: int) -> None:
    timing = LinkTiming(baudrate)

    timeout = timing.reply_timeout_s(17)

    assert timeout >= (17 + 265) * 10 / baudrate + 0.020
    assert timing.idle_gap_s >= 0.005


def test_unsupported_baud_rate_raises() -> None:
    with pytest.raises(ValueError, match="4800"):
        LinkTiming(4800)
