"""Message encoding and decoding: golden vectors, round trips and documented errors."""

import inspect
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocol import codec, messages
from firmware_protocol.codec import Packet, decode_packet, encode_packet
from firmware_protocol.crc import CRC8_CHECK, CRC16_CHECK, crc8, crc16
from firmware_protocol.decoder import FrameDecoder
from firmware_protocol.errors import EncodeError, MalformedPayloadError, UnknownMessageTypeError
from firmware_protocol.frame import MAX_PAYLOAD_SIZE, Frame, encode_frame
from firmware_protocol.messages import MESSAGE_TYPES, Message
from firmware_protocol.vectors import (
    VECTORS_PATH,
    message_from_fields,
    message_to_fields,
    render_vectors,
)
from protocol_strategies import any_message, message

VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
FRAME_VECTORS = VECTORS["frames"]


def test_crc_check_values() -> None:
    assert crc16(b"123456789") == CRC16_CHECK == 0x29B1
    assert crc8(b"123456789") == CRC8_CHECK == 0xF4
    assert VECTORS["crc"]["crc16_ccitt_false"] == "29b1"
    assert VECTORS["crc"]["crc8_smbus"] == "f4"


def test_vectors_file_is_current() -> None:
    assert VECTORS_PATH.read_text(encoding="utf-8") == render_vectors()


def test_every_message_class_is_registered() -> None:
    defined = {
        cls
        for _, cls in inspect.getmembers(messages, inspect.isclass)
        if issubclass(cls, Message) and "TYPE" in cls.__dict__
    }

    assert defined == set(MESSAGE_TYPES.values())


def test_every_message_type_has_a_vector() -> None:
    covered = {vector["message"] for vector in FRAME_VECTORS}

    missing = {cls.__name__ for cls in MESSAGE_TYPES.values()} - covered

    assert not missing, f"messages without a golden vector: {sorted(missing)}"


@pytest.mark.parametrize("vector", FRAME_VECTORS, ids=[v["name"] for v in FRAME_VECTORS])
def test_vector_encodes_to_its_bytes(vector: dict) -> None:
    packet = Packet(
        vector["address"], vector["seq"], message_from_fields(vector["message"], vector["fields"])
    )

    assert encode_packet(packet).hex() == vector["hex"]
    assert vector["type"] == packet.message.TYPE


@pytest.mark.parametrize("vector", FRAME_VECTORS, ids=[v["name"] for v in FRAME_VECTORS])
def test_vector_decodes_to_its_fields(vector: dict) -> None:
    frames = FrameDecoder().feed(bytes.fromhex(vector["hex"]))

    assert len(frames) == 1
    packet = decode_packet(frames[0])
    assert type(packet.message).__name__ == vector["message"]
    assert (packet.address, packet.seq) == (vector["address"], vector["seq"])
    assert message_to_fields(packet.message) == vector["fields"]


@given(any_message, st.integers(0, 255), st.integers(0, 255))
def test_any_message_round_trips(original: Message, address: int, seq: int) -> None:
    wire = encode_packet(Packet(address, seq, original))

    frames = FrameDecoder().feed(wire)

    assert len(frames) == 1
    assert decode_packet(frames[0]) == Packet(address, seq, original)


@pytest.mark.parametrize("cls", list(MESSAGE_TYPES.values()), ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_each_message_type_round_trips(cls: type[Message], data: st.DataObject) -> None:
    original = data.draw(message(cls))

    decoded = decode_packet(Frame(1, 1, cls.TYPE, original.encode_payload())).message

    assert decoded == original
    assert type(decoded) is cls


def test_unknown_type_raises() -> None:
    with pytest.raises(UnknownMessageTypeError) as caught:
        decode_packet(Frame(1, 1, 0x3E, b""))

    assert caught.value.type_code == 0x3E


@pytest.mark.parametrize(
    ("type_code", "payload"),
    [
        (messages.Unlock.TYPE, bytes(6)),
        (messages.Unlock.TYPE, bytes(8)),
        (messages.ReadWeights.TYPE, b"\x00"),
        (messages.WeightsReply.TYPE, b""),
        (messages.WeightsReply.TYPE, b"\x02" + bytes(6)),
        (messages.DoorStateReply.TYPE, b"\x01" + bytes(8)),
        (messages.ErrorReply.TYPE, bytes((0x02, 0x77))),
        (messages.LockFault.TYPE, bytes(5) + b"\x09"),
        (messages.PollEventReply.TYPE, b""),
        (messages.PollEventReply.TYPE, b"\x01\x00"),
        (messages.PollEventReply.TYPE, b"\x01\x00\x7e"),
        (messages.PollEventReply.TYPE, b"\x00\x00\x41"),
        (messages.PollEventReply.TYPE, b"\x01\x00\x41" + bytes(3)),
    ],
    ids=[
        "unlock_short",
        "unlock_long",
        "read_weights_with_payload",
        "weights_empty",
        "weights_count_mismatch",
        "door_state_record_too_long",
        "error_code_unknown",
        "lock_fault_code_unknown",
        "poll_reply_empty",
        "poll_reply_no_event_type",
        "poll_reply_unknown_event",
        "poll_reply_zero_pending_with_event",
        "poll_reply_event_too_short",
    ],
)
def test_malformed_payload_raises(type_code: int, payload: bytes) -> None:
    with pytest.raises(MalformedPayloadError) as caught:
        decode_packet(Frame(1, 1, type_code, payload))

    assert caught.value.type_code == type_code


@pytest.mark.parametrize(
    "bad_message",
    [
        lambda: messages.Unlock(0, 70_000, 1),
        lambda: messages.Unlock(-1, 500, 1),
        lambda: messages.Calibrate(0, 2**32),
        lambda: messages.WeightsReply(
            (messages.ShelfReading(0, messages.ShelfStatus.STABLE, 2**31),)
        ),
        lambda: messages.WeightsReply(
            tuple(messages.ShelfReading(i, messages.ShelfStatus(0), 0) for i in range(43))
        ),
    ],
    ids=[
        "pulse_too_long",
        "negative_door",
        "mass_too_large",
        "weight_overflow",
        "too_many_shelves",
    ],
)
def test_out_of_range_field_raises_encode_error(bad_message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EncodeError):
        encode_packet(Packet(1, 1, bad_message()))


def test_poll_reply_requires_event_exactly_when_pending() -> None:
    with pytest.raises(EncodeError):
        messages.PollEventReply(2)
    with pytest.raises(EncodeError):
        messages.PollEventReply(0, 1, messages.DoorForced(0, 0))


def test_frame_rejects_oversized_payload() -> None:
    with pytest.raises(EncodeError):
        Frame(1, 1, 1, bytes(MAX_PAYLOAD_SIZE + 1))


def test_frame_layout_matches_specification() -> None:
    wire = encode_frame(Frame(0x12, 0x34, 0x02, b"\x01\x02\x03"))

    assert wire[:2] == b"\xa5\x5a"
    assert wire[2:7] == bytes((1, 0x12, 0x34, 0x02, 3))
    assert wire[7] == crc8(wire[2:7])
    assert wire[8:11] == b"\x01\x02\x03"
    assert struct.unpack("<H", wire[11:13])[0] == crc16(wire[2:11])
    assert len(wire) == 13


def test_codec_exports_match_registry() -> None:
    assert codec.MESSAGE_TYPES is MESSAGE_TYPES
