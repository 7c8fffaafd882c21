"""PROTOCOL.md must describe every message, field and enumeration the code has."""

import enum
import re
from dataclasses import fields
from pathlib import Path

import pytest

import firmware_protocol
from firmware_protocol import messages
from firmware_protocol.codec import Packet, encode_packet
from firmware_protocol.frame import ADDRESS_ANY
from firmware_protocol.messages import MESSAGE_TYPES, Message, _Packed

SPEC = (Path(firmware_protocol.__file__).parent / "PROTOCOL.md").read_text(encoding="utf-8")
TYPE_NAMES = {"B": "u8", "H": "u16", "I": "u32", "h": "i16", "i": "i32"}
ALL_MESSAGES = sorted(MESSAGE_TYPES.values(), key=lambda cls: cls.TYPE)


def _section(heading: str) -> str:
    match = re.search(rf"^### {re.escape(heading)}\n(.*?)(?=^#)", SPEC, re.M | re.S)
    assert match, f"PROTOCOL.md has no section '### {heading}'"
    return match.group(1)


def _table_rows(section: str) -> list[list[str]]:
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]
    return rows[2:]  # drop the header and the rule


def _check_layout(heading: str, cls: type[_Packed]) -> None:
    rows = _table_rows(_section(heading))
    codes = cls.LAYOUT.format.lstrip("<")
    names = [field.name for field in fields(cls)]  # type: ignore[arg-type]
    offsets = [0]
    for code in codes[:-1]:
        offsets.append(offsets[-1] + int(TYPE_NAMES[code][1:]) // 8)

    documented = [(int(row[0]), row[1], row[2]) for row in rows]
    expected = [
        (offset, name, TYPE_NAMES[code])
        for offset, name, code in zip(offsets, names, codes, strict=True)
    ]
    assert documented == expected, heading


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda cls: cls.__name__)
def test_message_is_in_catalogue(cls: type[Message]) -> None:
    row = re.search(rf"^\| 0x{cls.TYPE:02X} \| {cls.__name__} \| (\w+) \|", SPEC, re.M)

    assert row, f"catalogue has no row for 0x{cls.TYPE:02X} {cls.__name__}"
    assert row.group(1) == cls.KIND.value


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda cls: cls.__name__)
def test_message_section_matches_layout(cls: type[Message]) -> None:
    heading = f"0x{cls.TYPE:02X} {cls.__name__}"
    if not hasattr(cls, "LAYOUT"):
        section = _section(heading)
        record_fields = [field.name for field in fields(cls)]  # type: ignore[arg-type]
        documented = [row[1] for row in _table_rows(section)]
        assert set(record_fields) <= set(documented), heading
        return
    if cls.LAYOUT.size == 0:
        assert "No payload." in _section(heading)
        return
    _check_layout(heading, cls)


@pytest.mark.parametrize("cls", [messages.DoorStatus, messages.ShelfReading])
def test_record_section_matches_layout(cls: type[_Packed]) -> None:
    _check_layout(f"Record {cls.__name__}", cls)


def test_catalogue_lists_no_message_the_code_lacks() -> None:
    rows = re.findall(r"^\| 0x([0-9A-F]{2}) \| (\w+) \| (?:request|reply|event) \|", SPEC, re.M)

    assert {(int(code, 16), name) for code, name in rows} == {
        (cls.TYPE, cls.__name__) for cls in ALL_MESSAGES
    }


@pytest.mark.parametrize(
    "enum_type",
    [
        messages.ErrorCode,
        messages.LockState,
        messages.DoorPosition,
        messages.ShelfStatus,
        messages.Capability,
        messages.LockFaultCode,
        messages.ScaleFaultCode,
        messages.ResetCause,
    ],
    ids=lambda enum_type: enum_type.__name__,
)
def test_enumeration_table_matches_code(enum_type: type[enum.IntEnum]) -> None:
    rows = _table_rows(_section(enum_type.__name__))

    documented = {(int(row[0], 0), row[1]) for row in rows}

    assert documented == {(int(member), member.name) for member in enum_type}


def test_example_exchange_matches_encoder() -> None:
    lines = re.findall(r"^(?:host  -> board|board -> host)\s+([0-9a-f ]+)$", SPEC, re.M)

    request = encode_packet(Packet(ADDRESS_ANY, 5, messages.Unlock(0, 500, 0xDEADBEEF)))
    reply = encode_packet(Packet(1, 5, messages.UnlockReply(0, 0xDEADBEEF)))
    assert [bytes.fromhex(line) for line in lines] == [request, reply]
