"""Typed messages of protocol version 1: every request, reply and event.

Each message is a frozen dataclass whose fields map one to one onto its
payload. ``LAYOUT`` is the payload's ``struct`` format (little-endian), and
PROTOCOL.md lists the same layouts for firmware written in C. Messages with a
list in their payload (door states, shelf readings, a polled event) override
``encode_payload`` and ``decode_payload``.

Units are in the field names: ``_ms`` milliseconds, ``_mg`` milligrams,
``_mv`` millivolts, ``_dc`` tenths of a degree Celsius, ``_ppm`` parts per million.
"""

import enum
import struct
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self, TypeVar

from firmware_protocol.errors import EncodeError, MalformedPayloadError

ALL_DOORS = 0xFF

_R = TypeVar("_R", bound="_Packed")


class MessageKind(enum.Enum):
    REQUEST = "request"
    REPLY = "reply"
    EVENT = "event"


class ErrorCode(enum.IntEnum):
    """Reason code of a rejected request (payload of ``ErrorReply``)."""

    UNKNOWN_TYPE = 0x01
    BAD_LENGTH = 0x02
    BAD_ARGUMENT = 0x03
    BUSY = 0x04
    NOT_STABLE = 0x05
    HARDWARE_FAULT = 0x06
    UNSUPPORTED_VERSION = 0x07


class LockState(enum.IntEnum):
    LOCKED = 0
    RELEASED = 1
    FAULT = 2


class DoorPosition(enum.IntEnum):
    CLOSED = 0
    OPEN = 1


class ShelfStatus(enum.IntFlag):
    """Status bits of one shelf reading; no bit set means moving but healthy."""

    STABLE = 0x01
    FAULT = 0x02
    OVERLOAD = 0x04


class Capability(enum.IntFlag):
    """Optional features a board announces in its handshake reply."""

    PUSH_EVENTS = 0x0001
    MULTI_DROP = 0x0002
    CALIBRATION = 0x0004
    TEMPERATURE = 0x0008
    SUPPLY_MONITOR = 0x0010


class LockFaultCode(enum.IntEnum):
    JAMMED = 1
    NOT_LATCHED = 2
    COIL_OPEN = 3


class ScaleFaultCode(enum.IntEnum):
    DISCONNECTED = 1
    STUCK = 2
    OVERLOAD = 3
    ADC_ERROR = 4


class ResetCause(enum.IntEnum):
    POWER_ON = 0
    WATCHDOG = 1
    BROWN_OUT = 2
    SOFTWARE = 3
    EXTERNAL = 4
    UNKNOWN = 0xFF


class _Packed:
    """Shared packing logic of messages and of the records inside list payloads."""

    __slots__ = ()

    LAYOUT: ClassVar[struct.Struct]
    ENUM_FIELDS: ClassVar[dict[str, type[enum.IntEnum] | type[enum.IntFlag]]] = {}

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, field.name) for field in fields(self))  # type: ignore[arg-type]

    def pack(self) -> bytes:
        try:
            return self.LAYOUT.pack(*self._values())
        except struct.error as exc:
            raise EncodeError(f"{type(self).__name__} {self._values()}: {exc}") from exc

    @classmethod
    def unpack(cls, data: bytes, *, type_code: int) -> Self:
        if len(data) != cls.LAYOUT.size:
            raise MalformedPayloadError(
                f"{cls.__name__} needs {cls.LAYOUT.size} payload bytes, got {len(data)}",
                type_code=type_code,
            )
        values = list(cls.LAYOUT.unpack(data))
        names = [field.name for field in fields(cls)]  # type: ignore[arg-type]
        for index, name in enumerate(names):
            enum_type = cls.ENUM_FIELDS.get(name)
            if enum_type is None:
                continue
            try:
                values[index] = enum_type(values[index])
            except ValueError as exc:
                invalid = f"{values[index]:#04x} is not a valid {enum_type.__name__}"
                raise MalformedPayloadError(
                    f"{cls.__name__}.{name}: {invalid}", type_code=type_code
                ) from exc
        return cls(*values)


class Message(_Packed):
    """Base of every message; ``TYPE`` is the frame's TYPE byte."""

    __slots__ = ()

    TYPE: ClassVar[int]
    KIND: ClassVar[MessageKind]

    def encode_payload(self) -> bytes:
        return self.pack()

    @classmethod
    def decode_payload(cls, payload: bytes) -> Self:
        """Parse ``payload``; raises ``MalformedPayloadError`` if it is not this message."""
        return cls.unpack(payload, type_code=cls.TYPE)


class Request(Message):
    """A message from the host to a board; the board answers with one reply."""

    __slots__ = ()

    KIND = MessageKind.REQUEST
    # True for requests that move hardware or change board state, which the
    # host must never reissue with a new sequence number when a reply is lost.
    HAS_EFFECT: ClassVar[bool] = False

    @classmethod
    def reply_type(cls) -> int:
        return cls.TYPE | 0x80


class Reply(Message):
    """A board's answer to a request, carrying the request's sequence number."""

    __slots__ = ()

    KIND = MessageKind.REPLY


class Event(Message):
    """An unsolicited report from a board; its frame carries the event sequence number."""

    __slots__ = ()

    KIND = MessageKind.EVENT


# Requests and their replies, in type-code order.


@dataclass(frozen=True, slots=True)
class Hello(Request):
    """Handshake: starts a link session and clears the board's reply cache."""

    TYPE = 0x01
    LAYOUT = struct.Struct("<B")

    host_version: int


@dataclass(frozen=True, slots=True)
class HelloReply(Reply):
    TYPE = 0x81
    LAYOUT = struct.Struct("<BBBBIBBH")
    ENUM_FIELDS = {"capabilities": Capability}

    protocol_version: int
    firmware_major: int
    firmware_minor: int
    firmware_patch: int
    serial_number: int
    doors: int
    shelves: int
    capabilities: Capability


@dataclass(frozen=True, slots=True)
class Unlock(Request):
    """Pulse a door's lock; ``token`` identifies this unlock in later door states."""

    TYPE = 0x02
    LAYOUT = struct.Struct("<BHI")
    HAS_EFFECT = True

    door: int
    pulse_ms: int
    token: int


@dataclass(frozen=True, slots=True)
class UnlockReply(Reply):
    TYPE = 0x82
    LAYOUT = struct.Struct("<BI")

    door: int
    token: int


@dataclass(frozen=True, slots=True)
class GetDoorState(Request):
    """Read lock and door state of one door, or of all with ``ALL_DOORS``."""

    TYPE = 0x03
    LAYOUT = struct.Struct("<B")

    door: int = ALL_DOORS


@dataclass(frozen=True, slots=True)
class DoorStatus(_Packed):
    """One door's entry in ``DoorStateReply``."""

    LAYOUT = struct.Struct("<BBBI")
    ENUM_FIELDS = {"lock": LockState, "position": DoorPosition}

    door: int
    lock: LockState
    position: DoorPosition
    last_token: int


@dataclass(frozen=True, slots=True)
class ShelfReading(_Packed):
    """One shelf's entry in ``WeightsReply``: net weight in milligrams after tare."""

    LAYOUT = struct.Struct("<BBi")
    ENUM_FIELDS = {"status": ShelfStatus}

    shelf: int
    status: ShelfStatus
    weight_mg: int

    @property
    def stable(self) -> bool:
        return bool(self.status & ShelfStatus.STABLE)

    @property
    def fault(self) -> bool:
        return bool(self.status & ShelfStatus.FAULT)


def _pack_records(records: tuple[_Packed, ...], owner: str) -> bytes:
    if len(records) > 0xFF:
        raise EncodeError(f"{owner}: {len(records)} entries do not fit a one-byte count")
    return bytes((len(records),)) + b"".join(record.pack() for record in records)


def _unpack_records(
    record_type: type[_R], payload: bytes, owner: type["Message"]
) -> tuple[_R, ...]:
    if not payload:
        raise MalformedPayloadError(f"{owner.__name__} payload is empty", type_code=owner.TYPE)
    count, size = payload[0], record_type.LAYOUT.size
    if len(payload) != 1 + count * size:
        raise MalformedPayloadError(
            f"{owner.__name__} announces {count} entries of {size} bytes"
            f" but carries {len(payload) - 1} bytes",
            type_code=owner.TYPE,
        )
    return tuple(
        record_type.unpack(payload[1 + i * size : 1 + (i + 1) * size], type_code=owner.TYPE)
        for i in range(count)
    )


@dataclass(frozen=True, slots=True)
class DoorStateReply(Reply):
    TYPE = 0x83

    doors: tuple[DoorStatus, ...]

    def encode_payload(self) -> bytes:
        return _pack_records(self.doors, type(self).__name__)

    @classmethod
    def decode_payload(cls, payload: bytes) -> Self:
        return cls(_unpack_records(DoorStatus, payload, cls))


@dataclass(frozen=True, slots=True)
class ReadWeights(Request):
    """Read every shelf's weight with its status bits."""

    TYPE = 0x04
    LAYOUT = struct.Struct("<")


@dataclass(frozen=True, slots=True)
class WeightsReply(Reply):
    TYPE = 0x84

    shelves: tuple[ShelfReading, ...]

    def encode_payload(self) -> bytes:
        return _pack_records(self.shelves, type(self).__name__)

    @classmethod
    def decode_payload(cls, payload: bytes) -> Self:
        return cls(_unpack_records(ShelfReading, payload, cls))


@dataclass(frozen=True, slots=True)
class Tare(Request):
    """Set a shelf's zero to its present stable reading."""

    TYPE = 0x05
    LAYOUT = struct.Struct("<B")
    HAS_EFFECT = True

    shelf: int


@dataclass(frozen=True, slots=True)
class TareReply(Reply):
    TYPE = 0x85
    LAYOUT = struct.Struct("<B")

    shelf: int


@dataclass(frozen=True, slots=True)
class Calibrate(Request):
    """Set a shelf's gain so that its present load reads ``mass_mg``."""

    TYPE = 0x06
    LAYOUT = struct.Struct("<BI")
    HAS_EFFECT = True

    shelf: int
    mass_mg: int


@dataclass(frozen=True, slots=True)
class CalibrateReply(Reply):
    TYPE = 0x86
    LAYOUT = struct.Struct("<BI")

    shelf: int
    gain_ppm: int


@dataclass(frozen=True, slots=True)
class Diagnostics(Request):
    TYPE = 0x07
    LAYOUT = struct.Struct("<")


@dataclass(frozen=True, slots=True)
class DiagnosticsReply(Reply):
    """Board health and link counters since the board started."""

    TYPE = 0x87
    LAYOUT = struct.Struct("<IHhBIIIIHHBH")
    ENUM_FIELDS = {"reset_cause": ResetCause}

    uptime_s: int
    supply_mv: int
    temperature_dc: int
    reset_cause: ResetCause
    rx_frames: int
    rx_header_errors: int
    rx_crc_errors: int
    repeated_requests: int
    lock_faults: int
    scale_faults: int
    events_pending: int
    events_dropped: int


@dataclass(frozen=True, slots=True)
class AckEvent(Request):
    """Acknowledge the event with sequence number ``event_seq`` so the board drops it."""

    TYPE = 0x08
    LAYOUT = struct.Struct("<B")

    event_seq: int


@dataclass(frozen=True, slots=True)
class AckEventReply(Reply):
    TYPE = 0x88
    LAYOUT = struct.Struct("<B")

    event_seq: int


@dataclass(frozen=True, slots=True)
class PollEvent(Request):
    """Ask for the oldest unacknowledged event (multi-drop buses, where boards never push)."""

    TYPE = 0x09
    LAYOUT = struct.Struct("<")


@dataclass(frozen=True, slots=True)
class ErrorReply(Reply):
    """The board refused the request of type ``request_type``; nothing was done."""

    TYPE = 0xFF
    LAYOUT = struct.Struct("<BB")
    ENUM_FIELDS = {"code": ErrorCode}

    request_type: int
    code: ErrorCode


# Events. Each starts with the board's uptime in milliseconds (wraps after 49.7 days).


@dataclass(frozen=True, slots=True)
class DoorOpened(Event):
    """The door opened after an unlock; ``token`` is that unlock's token."""

    TYPE = 0x41
    LAYOUT = struct.Struct("<IBI")

    uptime_ms: int
    door: int
    token: int


@dataclass(frozen=True, slots=True)
class DoorClosed(Event):
    TYPE = 0x42
    LAYOUT = struct.Struct("<IBI")

    uptime_ms: int
    door: int
    open_ms: int


@dataclass(frozen=True, slots=True)
class DoorForced(Event):
    """The door opened while the lock was latched: no unlock allowed it."""

    TYPE = 0x43
    LAYOUT = struct.Struct("<IB")

    uptime_ms: int
    door: int


@dataclass(frozen=True, slots=True)
class LockFault(Event):
    TYPE = 0x44
    LAYOUT = struct.Struct("<IBB")
    ENUM_FIELDS = {"fault": LockFaultCode}

    uptime_ms: int
    door: int
    fault: LockFaultCode


@dataclass(frozen=True, slots=True)
class ScaleFault(Event):
    TYPE = 0x45
    LAYOUT = struct.Struct("<IBB")
    ENUM_FIELDS = {"fault": ScaleFaultCode}

    uptime_ms: int
    shelf: int
    fault: ScaleFaultCode


@dataclass(frozen=True, slots=True)
class BoardStarted(Event):
    """First event after a reset; its event sequence number is always 0."""

    TYPE = 0x46
    LAYOUT = struct.Struct("<IB")
    ENUM_FIELDS = {"reset_cause": ResetCause}

    uptime_ms: int
    reset_cause: ResetCause


EVENT_TYPES: dict[int, type[Event]] = {
    cls.TYPE: cls
    for cls in (DoorOpened, DoorClosed, DoorForced, LockFault, ScaleFault, BoardStarted)
}


@dataclass(frozen=True, slots=True)
class PollEventReply(Reply):
    """``pending`` counts unacknowledged events including ``event``, which is the oldest."""

    TYPE = 0x89

    pending: int
    event_seq: int = 0
    event: Event | None = None

    def __post_init__(self) -> None:
        if (self.pending == 0) != (self.event is None):
            raise EncodeError("PollEventReply carries an event exactly when pending > 0")

    def encode_payload(self) -> bytes:
        if self.event is None:
            return bytes((self.pending,))
        if not 0 <= self.pending <= 0xFF or not 0 <= self.event_seq <= 0xFF:
            raise EncodeError(f"PollEventReply counters out of range: {self}")
        return bytes((self.pending, self.event_seq, self.event.TYPE)) + self.event.encode_payload()

    @classmethod
    def decode_payload(cls, payload: bytes) -> Self:
        if len(payload) == 1 and payload[0] == 0:
            return cls(0)
        if len(payload) < 3 or payload[0] == 0:
            raise MalformedPayloadError(
                f"PollEventReply payload of {len(payload)} bytes is neither empty-queue nor event",
                type_code=cls.TYPE,
            )
        event_type = EVENT_TYPES.get(payload[2])
        if event_type is None:
            raise MalformedPayloadError(
                f"PollEventReply carries unknown event type {payload[2]:#04x}", type_code=cls.TYPE
            )
        try:
            event = event_type.decode_payload(payload[3:])
        except MalformedPayloadError as exc:
            raise MalformedPayloadError(
                f"PollEventReply carries a bad event: {exc}", type_code=cls.TYPE
            ) from exc
        return cls(payload[0], payload[1], event)


_ALL_MESSAGES: tuple[type[Message], ...] = (
    Hello,
    HelloReply,
    Unlock,
    UnlockReply,
    GetDoorState,
    DoorStateReply,
    ReadWeights,
    WeightsReply,
    Tare,
    TareReply,
    Calibrate,
    CalibrateReply,
    Diagnostics,
    DiagnosticsReply,
    AckEvent,
    AckEventReply,
    PollEvent,
    PollEventReply,
    ErrorReply,
    *EVENT_TYPES.values(),
)
MESSAGE_TYPES: dict[int, type[Message]] = {cls.TYPE: cls for cls in _ALL_MESSAGES}
