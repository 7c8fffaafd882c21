"""Golden test vectors: what ``vectors.json`` holds and how it is built.

The file is the contract for firmware written in C: every frame type with its
fields and exact bytes, and damaged streams with what a decoder must return.
Regenerate it only after a deliberate change to the wire format::

    python -m firmware_protocol.vectors --write

and review the diff, since every changed byte breaks firmware built against
the old file. ``--check`` exits 1 if the file differs from what the code
produces.
"""

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from firmware_protocol.codec import Packet, encode_packet
from firmware_protocol.crc import CRC8_CHECK, CRC16_CHECK
from firmware_protocol.decoder import FrameDecoder
from firmware_protocol.frame import ADDRESS_ANY, Frame, encode_frame, header_check
from firmware_protocol.messages import (
    ALL_DOORS,
    MESSAGE_TYPES,
    AckEvent,
    AckEventReply,
    BoardStarted,
    Calibrate,
    CalibrateReply,
    Capability,
    Diagnostics,
    DiagnosticsReply,
    DoorClosed,
    DoorForced,
    DoorOpened,
    DoorPosition,
    DoorStateReply,
    DoorStatus,
    ErrorCode,
    ErrorReply,
    Event,
    GetDoorState,
    Hello,
    HelloReply,
    LockFault,
    LockFaultCode,
    LockState,
    Message,
    PollEvent,
    PollEventReply,
    ReadWeights,
    ResetCause,
    ScaleFault,
    ScaleFaultCode,
    ShelfReading,
    ShelfStatus,
    Tare,
    TareReply,
    Unlock,
    UnlockReply,
    WeightsReply,
    _Packed,
)

VECTORS_PATH = Path(__file__).with_name("vectors.json")
MESSAGE_NAMES: dict[str, type[Message]] = {cls.__name__: cls for cls in MESSAGE_TYPES.values()}
_RECORD_FIELDS: dict[str, type[_Packed]] = {"doors": DoorStatus, "shelves": ShelfReading}


def _value_to_json(value: object) -> Any:
    if isinstance(value, tuple):
        return [_record_to_json(record) for record in value]
    if isinstance(value, Event):
        return {"type": type(value).__name__, "fields": message_to_fields(value)}
    if value is None or isinstance(value, int):
        return None if value is None else int(value)
    raise TypeError(f"no JSON form for {value!r}")


def _record_to_json(record: _Packed) -> dict[str, int]:
    return {field.name: int(getattr(record, field.name)) for field in fields(record)}  # type: ignore[arg-type]


def message_to_fields(message: Message) -> dict[str, Any]:
    """Return the message's fields as JSON values (enumerations as integers)."""
    return {
        field.name: _value_to_json(getattr(message, field.name))
        for field in fields(message)  # type: ignore[arg-type]
    }


def _packed_from_json(cls: type[_Packed], values: dict[str, Any]) -> dict[str, Any]:
    converted = dict(values)
    for name, enum_type in cls.ENUM_FIELDS.items():
        if name in converted:
            converted[name] = enum_type(converted[name])
    return converted


def message_from_fields(name: str, values: dict[str, Any]) -> Message:
    """Build the message called ``name`` from JSON field values."""
    cls = MESSAGE_NAMES[name]
    kwargs = _packed_from_json(cls, values)
    for field_name, record_type in _RECORD_FIELDS.items():
        if isinstance(kwargs.get(field_name), list):
            kwargs[field_name] = tuple(
                record_type(**_packed_from_json(record_type, record))
                for record in kwargs[field_name]
            )
    if isinstance(kwargs.get("event"), dict):
        nested = kwargs["event"]
        kwargs["event"] = message_from_fields(nested["type"], nested["fields"])
    return cls(**kwargs)


def sample_packets() -> list[tuple[str, Packet]]:
    """Return named packets covering every message type and the edges of their fields."""
    stable = ShelfStatus.STABLE
    return [
        ("hello", Packet(ADDRESS_ANY, 0, Hello(1))),
        (
            "hello_reply",
            Packet(1, 0, HelloReply(1, 1, 4, 2, 0x00C0FFEE, 1, 4, Capability(0x000D))),
        ),
        ("unlock", Packet(ADDRESS_ANY, 5, Unlock(0, 500, 0xDEADBEEF))),
        ("unlock_max_fields", Packet(247, 255, Unlock(7, 2000, 0xFFFFFFFF))),
        ("unlock_reply", Packet(1, 5, UnlockReply(0, 0xDEADBEEF))),
        ("get_door_state_all", Packet(1, 6, GetDoorState(ALL_DOORS))),
        ("get_door_state_one", Packet(1, 7, GetDoorState(1))),
        (
            "door_state_reply",
            Packet(
                1,
                6,
                DoorStateReply(
                    (
                        DoorStatus(0, LockState.LOCKED, DoorPosition.CLOSED, 0xDEADBEEF),
                        DoorStatus(1, LockState.FAULT, DoorPosition.OPEN, 0),
                    )
                ),
            ),
        ),
        ("door_state_reply_empty", Packet(1, 8, DoorStateReply(()))),
        ("read_weights", Packet(1, 9, ReadWeights())),
        (
            "weights_reply",
            Packet(
                1,
                9,
                WeightsReply(
                    (
                        ShelfReading(0, stable, 1_250_000),
                        ShelfReading(1, ShelfStatus(0), 498_730),
                        ShelfReading(2, stable, -1_840),
                        ShelfReading(3, ShelfStatus.FAULT, 0),
                        ShelfReading(4, ShelfStatus.OVERLOAD | ShelfStatus.FAULT, 2_147_483_647),
                    )
                ),
            ),
        ),
        ("tare", Packet(1, 10, Tare(2))),
        ("tare_reply", Packet(1, 10, TareReply(2))),
        ("calibrate", Packet(1, 11, Calibrate(2, 1_000_000))),
        ("calibrate_reply", Packet(1, 11, CalibrateReply(2, 1_003_125))),
        ("diagnostics", Packet(1, 12, Diagnostics())),
        (
            "diagnostics_reply",
            Packet(
                1,
                12,
                DiagnosticsReply(
                    86_400, 12_050, -55, ResetCause.BROWN_OUT, 10_000, 3, 7, 2, 1, 0, 1, 0
                ),
            ),
        ),
        ("ack_event", Packet(1, 13, AckEvent(4))),
        ("ack_event_reply", Packet(1, 13, AckEventReply(4))),
        ("poll_event", Packet(3, 14, PollEvent())),
        ("poll_event_reply_empty", Packet(3, 14, PollEventReply(0))),
        (
            "poll_event_reply_door_closed",
            Packet(3, 15, PollEventReply(2, 9, DoorClosed(61_000, 0, 4_200))),
        ),
        ("error_reply_busy", Packet(1, 16, ErrorReply(Unlock.TYPE, ErrorCode.BUSY))),
        ("error_reply_unknown_type", Packet(1, 17, ErrorReply(0x3E, ErrorCode.UNKNOWN_TYPE))),
        ("door_opened", Packet(1, 1, DoorOpened(60_000, 0, 0xDEADBEEF))),
        ("door_closed", Packet(1, 2, DoorClosed(64_200, 0, 4_200))),
        ("door_forced", Packet(1, 3, DoorForced(90_000, 1))),
        ("lock_fault_jammed", Packet(1, 4, LockFault(91_000, 0, LockFaultCode.JAMMED))),
        (
            "scale_fault_disconnected",
            Packet(1, 5, ScaleFault(92_000, 3, ScaleFaultCode.DISCONNECTED)),
        ),
        ("board_started", Packet(1, 0, BoardStarted(12, ResetCause.POWER_ON))),
    ]


def _stream(
    name: str, description: str, data: bytes, *, idle_flush: bool = False
) -> dict[str, Any]:
    decoder = FrameDecoder()
    frames = decoder.feed(data)
    if idle_flush:
        frames += decoder.flush()
    stats = decoder.stats
    return {
        "name": name,
        "description": description,
        "hex": data.hex(),
        "idle_flush": idle_flush,
        "expected": {
            "frames": [encode_frame(frame).hex() for frame in frames],
            "header_errors": stats.header_errors,
            "crc_errors": stats.crc_errors,
            "version_errors": stats.version_errors,
            "bytes_discarded": stats.bytes_discarded,
            "pending": decoder.pending,
        },
    }


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    return data[:index] + bytes((data[index] ^ mask,)) + data[index + 1 :]


def sample_streams() -> list[dict[str, Any]]:
    """Return damaged and unusual byte streams with the decoder's expected results."""
    unlock = encode_packet(Packet(ADDRESS_ANY, 5, Unlock(0, 500, 0xDEADBEEF)))
    reply = encode_packet(Packet(1, 5, UnlockReply(0, 0xDEADBEEF)))
    opened = encode_packet(Packet(1, 1, DoorOpened(60_000, 0, 0xDEADBEEF)))
    read = encode_packet(Packet(1, 9, ReadWeights()))

    # A header that passes its check but announces 200 payload bytes that never come.
    header = bytes((1, 1, 9, 0x84, 200))
    long_promise = b"\xa5\x5a" + header + bytes((header_check(*header),))
    version_2 = Frame(1, 5, UnlockReply.TYPE, bytes(5), version=2)

    return [
        _stream("two_frames", "two valid frames back to back", unlock + reply),
        _stream("truncated", "a frame cut off before its CRC", unlock[:-3]),
        _stream(
            "truncated_then_frame",
            "a frame cut off, then a whole frame: the cut frame fails its CRC and the second "
            "is found by rescanning",
            unlock[:-3] + reply,
        ),
        _stream(
            "garbage_prefix",
            "noise without a start of frame, then a frame",
            b"\x00\x13\xff\x5a" + read,
        ),
        _stream(
            "garbage_with_sof",
            "noise holding a start of frame and a bad header, then a frame",
            b"\xa5\x5a\x01\x02\x03\x04\x05\x06\x07" + opened,
        ),
        _stream(
            "corrupted_payload",
            "one payload bit flipped, then an intact frame",
            _flip(unlock, 9) + reply,
        ),
        _stream(
            "corrupted_length",
            "LEN flipped so the header check fails, then an intact frame",
            _flip(unlock, 6, 0x10) + reply,
        ),
        _stream("corrupted_crc", "the CRC's high byte flipped", _flip(reply, len(reply) - 1, 0x80)),
        _stream(
            "corrupted_sof", "the SOF's second byte flipped: the frame is skipped", _flip(reply, 1)
        ),
        _stream(
            "unsupported_version",
            "a whole frame with VER 2 and a valid CRC is dropped, the next frame is kept",
            encode_frame(version_2) + reply,
        ),
        _stream(
            "trailing_sof_half",
            "a frame followed by 0xA5, which is kept as a possible start of frame",
            reply + b"\xa5",
        ),
        _stream(
            "long_promise_then_idle",
            "a header announcing 200 bytes, an intact frame inside that span, then the line "
            "goes idle: the flush recovers the frame",
            long_promise + reply,
            idle_flush=True,
        ),
        _stream(
            "frame_split_by_noise",
            "noise bytes inserted in the middle of a frame, then an intact frame",
            unlock[:7] + b"\x00\x00" + unlock[7:] + opened,
        ),
    ]


def build_vectors() -> dict[str, Any]:
    return {
        "protocol_version": 1,
        "crc": {
            "input_ascii": "123456789",
            "crc8_smbus": f"{CRC8_CHECK:02x}",
            "crc16_ccitt_false": f"{CRC16_CHECK:04x}",
        },
        "frames": [
            {
                "name": name,
                "message": type(packet.message).__name__,
                "type": packet.message.TYPE,
                "address": packet.address,
                "seq": packet.seq,
                "fields": message_to_fields(packet.message),
                "hex": encode_packet(packet).hex(),
            }
            for name, packet in sample_packets()
        ],
        "streams": sample_streams(),
    }


def render_vectors() -> str:
    return json.dumps(build_vectors(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build or check the golden protocol vectors.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help=f"write {VECTORS_PATH.name}")
    action.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args(argv)

    text = render_vectors()
    if args.write:
        VECTORS_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {VECTORS_PATH}")
        return 0
    if VECTORS_PATH.read_text(encoding="utf-8") != text:
        print(f"{VECTORS_PATH} is out of date: run python -m firmware_protocol.vectors --write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
