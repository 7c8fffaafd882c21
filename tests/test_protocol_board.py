"""The board side of the link: reply cache, addressing, error replies and the event queue."""

from firmware_protocol.board import EVENT_QUEUE_SIZE, EVENT_RESEND_MS, BoardLink
from firmware_protocol.codec import Packet, decode_packet, encode_packet
from firmware_protocol.decoder import FrameDecoder
from firmware_protocol.frame import ADDRESS_ANY, Frame, encode_frame
from firmware_protocol.messages import (
    AckEvent,
    AckEventReply,
    DoorForced,
    ErrorCode,
    ErrorReply,
    Hello,
    HelloReply,
    PollEvent,
    PollEventReply,
    ReadWeights,
    Unlock,
    UnlockReply,
)
from link_pair import FakeBoard


def _board(**kwargs: object) -> tuple[BoardLink, FakeBoard]:
    hardware = FakeBoard()
    return BoardLink(address=3, handler=hardware, **kwargs), hardware  # type: ignore[arg-type]


def _replies(board: BoardLink) -> list[Packet]:
    return [decode_packet(frame) for frame in FrameDecoder().feed(board.data_to_send())]


def test_repeated_unlock_gets_cached_reply_without_pulse() -> None:
    board, hardware = _board()
    request = encode_packet(Packet(3, 9, Unlock(0, 500, 42)))

    board.receive(request, 0.0)
    first = board.data_to_send()
    board.receive(request, 0.1)
    second = board.data_to_send()

    assert hardware.pulses == [42]
    assert first == second
    assert decode_packet(FrameDecoder().feed(first)[0]).message == UnlockReply(0, 42)
    assert board.stats.repeated_requests == 1


def test_same_seq_with_new_payload_is_executed() -> None:
    board, hardware = _board()

    board.receive(encode_packet(Packet(3, 9, Unlock(0, 500, 42))), 0.0)
    board.receive(encode_packet(Packet(3, 9, Unlock(0, 500, 43))), 0.0)

    assert hardware.pulses == [42, 43]


def test_hello_clears_reply_cache() -> None:
    board, hardware = _board()
    request = encode_packet(Packet(3, 1, Unlock(0, 500, 42)))

    board.receive(request, 0.0)
    board.receive(encode_packet(Packet(3, 0, Hello(1))), 0.0)
    board.receive(request, 0.0)

    assert hardware.pulses == [42, 42]


def test_hello_below_supported_version_is_refused() -> None:
    board, _ = _board()

    board.receive(encode_packet(Packet(3, 0, Hello(0))), 0.0)

    [reply] = _replies(board)
    assert reply.message == ErrorReply(Hello.TYPE, ErrorCode.UNSUPPORTED_VERSION)


def test_hello_is_answered_by_handler() -> None:
    board, _ = _board()

    board.receive(encode_packet(Packet(ADDRESS_ANY, 0, Hello(1))), 0.0)

    [reply] = _replies(board)
    assert isinstance(reply.message, HelloReply)
    assert reply.address == 3


def test_request_for_other_address_is_ignored() -> None:
    board, hardware = _board()

    board.receive(encode_packet(Packet(4, 1, Unlock(0, 500, 1))), 0.0)

    assert board.data_to_send() == b""
    assert hardware.pulses == []
    assert board.stats.ignored_frames == 1


def test_unknown_request_type_gets_error_reply() -> None:
    board, _ = _board()

    board.receive(encode_frame(Frame(3, 4, 0x3E, b"")), 0.0)

    [reply] = _replies(board)
    assert reply.seq == 4
    assert reply.message == ErrorReply(0x3E, ErrorCode.UNKNOWN_TYPE)


def test_wrong_payload_length_gets_bad_length() -> None:
    board, hardware = _board()

    board.receive(encode_frame(Frame(3, 4, Unlock.TYPE, b"\x00\x01")), 0.0)

    [reply] = _replies(board)
    assert reply.message == ErrorReply(Unlock.TYPE, ErrorCode.BAD_LENGTH)
    assert hardware.pulses == []


def test_corrupted_request_gets_no_reply() -> None:
    board, hardware = _board()
    wire = bytearray(encode_packet(Packet(3, 1, Unlock(0, 500, 1))))
    wire[10] ^= 0xFF

    board.receive(bytes(wire), 0.0)

    assert board.data_to_send() == b""
    assert hardware.pulses == []
    assert board.decoder.stats.crc_errors == 1


def test_first_event_has_seq_zero_and_later_wrap_to_one() -> None:
    board, _ = _board(push_events=False, event_queue_size=300)

    for uptime in range(257):
        board.post_event(DoorForced(uptime, 0), 0.0)

    seqs = [seq for seq, _ in board._events]
    assert seqs[:3] == [0, 1, 2]
    assert seqs[255:257] == [255, 1]


def test_pushed_event_is_resent_until_acknowledged() -> None:
    board, _ = _board()

    board.post_event(DoorForced(10, 1), 0.0)
    first = board.data_to_send()
    board.poll(EVENT_RESEND_MS / 1000 / 2)
    early = board.data_to_send()
    board.poll(EVENT_RESEND_MS / 1000)
    resent = board.data_to_send()
    board.receive(encode_packet(Packet(3, 5, AckEvent(0))), 0.3)

    assert early == b""
    assert resent == first
    assert board.events_pending == 0
    [ack] = _replies(board)
    assert ack.message == AckEventReply(0)


def test_ack_for_other_seq_keeps_event() -> None:
    board, _ = _board()
    board.post_event(DoorForced(10, 1), 0.0)
    board.data_to_send()

    board.receive(encode_packet(Packet(3, 5, AckEvent(9))), 0.0)

    assert board.events_pending == 1


def test_poll_mode_hands_out_oldest_event() -> None:
    board, _ = _board(push_events=False)
    board.post_event(DoorForced(10, 1), 0.0)
    board.post_event(DoorForced(20, 0), 0.0)

    assert board.data_to_send() == b""
    board.receive(encode_packet(Packet(3, 1, PollEvent())), 0.0)

    [reply] = _replies(board)
    assert reply.message == PollEventReply(2, 0, DoorForced(10, 1))


def test_poll_on_empty_queue() -> None:
    board, _ = _board(push_events=False)

    board.receive(encode_packet(Packet(3, 1, PollEvent())), 0.0)

    [reply] = _replies(board)
    assert reply.message == PollEventReply(0)


def test_full_event_queue_drops_and_counts() -> None:
    board, _ = _board(push_events=False)

    accepted = [board.post_event(DoorForced(i, 0), 0.0) for i in range(EVENT_QUEUE_SIZE + 2)]

    assert accepted.count(False) == 2
    assert board.stats.events_dropped == 2
    assert board.events_pending == EVENT_QUEUE_SIZE


def test_reply_to_read_is_not_cached_across_new_seq() -> None:
    board, _ = _board()

    board.receive(encode_packet(Packet(3, 1, ReadWeights())), 0.0)
    board.receive(encode_packet(Packet(3, 2, ReadWeights())), 0.0)

    assert [p.seq for p in _replies(board)] == [1, 2]
    assert board.stats.repeated_requests == 0
