"""Fault switches of a virtual board, and the injector of link faults.

A fault is written ``NAME=VALUE``, the same on the command line (``--fault``),
in a scenario file and on the control socket:

Link faults, each a probability from 0 to 1 (0 switches the fault off):

  corrupt=P         flip one bit in each byte the board sends, with probability P per byte
  corrupt-frame=P   corrupt one byte of each frame the board sends, with probability P
  corrupt-rx=P      flip one bit in each byte the board receives, with probability P per byte
  drop=P            lose each reply and event frame the board sends, with probability P
  late=P            send each reply later than the host's reply timeout, with probability P
  late-ms=MS        delay of a late reply in milliseconds (default: 1.5 x the longest
                    reply timeout of the link's baud rate)

Hardware faults, each naming a 0-based door or shelf (cleared with ``clear_fault``):

  jammed-lock=DOOR         the lock does not release when pulsed (LockFault JAMMED)
  latch-fail=DOOR          the lock does not latch when the door closes (LockFault NOT_LATCHED)
  scale-disconnected=SHELF the load cell is unplugged (ScaleFault DISCONNECTED)
  scale-stuck=SHELF        the ADC output freezes (ScaleFault STUCK after 2 s)
"""

import logging
import random
import threading
from dataclasses import dataclass, field

from firmware_protocol.frame import HEADER_SIZE, MAX_FRAME_SIZE, SOF, TRAILER_SIZE
from firmware_protocol.link import LinkTiming

logger = logging.getLogger(__name__)

PROBABILITY_FAULTS = ("corrupt", "corrupt-frame", "corrupt-rx", "drop", "late")
LATE_DELAY_FAULT = "late-ms"
DOOR_FAULTS = ("jammed-lock", "latch-fail")
SHELF_FAULTS = ("scale-disconnected", "scale-stuck")
FAULT_NAMES = (*PROBABILITY_FAULTS, LATE_DELAY_FAULT, *DOOR_FAULTS, *SHELF_FAULTS)
# A late reply waits this multiple of the longest reply timeout unless late-ms is set.
LATE_TIMEOUT_FACTOR = 1.5
# Event frames have type codes 0x40..0x7F, replies 0x80..0xFF.
_EVENT_TYPES = range(0x40, 0x80)
_TYPE_OFFSET = 5
_LENGTH_OFFSET = 6


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One parsed ``NAME=VALUE`` fault switch."""

    name: str
    value: float

    @property
    def is_hardware(self) -> bool:
        return self.name in DOOR_FAULTS or self.name in SHELF_FAULTS

    @property
    def index(self) -> int:
        """Door or shelf index of a hardware fault."""
        return int(self.value)

    def __str__(self) -> str:
        value = self.index if self.is_hardware else self.value
        return f"{self.name}={value}"


def parse_fault(text: str) -> FaultSpec:
    """Parse ``NAME=VALUE``; raises ``ValueError`` with the accepted forms."""
    name, separator, raw_value = text.partition("=")
    name = name.strip()
    raw_value = raw_value.strip()
    if not separator or not raw_value:
        raise ValueError(f"fault {text!r} is not of the form NAME=VALUE, for example drop=0.02")
    if name not in FAULT_NAMES:
        raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(FAULT_NAMES)}")
    if name in DOOR_FAULTS or name in SHELF_FAULTS:
        target = "door" if name in DOOR_FAULTS else "shelf"
        try:
            index = int(raw_value)
        except ValueError:
            raise ValueError(
                f"fault {name}: {raw_value!r} is not a {target} index (0, 1, ...)"
            ) from None
        if index < 0:
            raise ValueError(f"fault {name}: {target} index {index} must be >= 0")
        return FaultSpec(name, index)
    try:
        value = float(raw_value)
    except ValueError:
        raise ValueError(f"fault {name}: {raw_value!r} is not a number") from None
    if name == LATE_DELAY_FAULT:
        if not value > 0:
            raise ValueError(f"fault {name}: delay {value} ms must be > 0")
    elif not 0 <= value <= 1:
        raise ValueError(f"fault {name}: probability {value} must be in 0..1")
    return FaultSpec(name, value)


@dataclass(slots=True)
class LinkFaultStats:
    bytes_corrupted: int = 0
    frames_corrupted: int = 0
    rx_bytes_corrupted: int = 0
    frames_dropped: int = 0
    replies_delayed: int = 0


@dataclass(slots=True)
class OutgoingFrame:
    """A frame ready for the wire; ``delay_s`` is the wait before its first byte is sent."""

    data: bytes
    delay_s: float = 0.0


@dataclass(slots=True)
class LinkFaults:
    """Link fault switches and the injector that applies them; thread-safe."""

    baudrate: int
    rng: random.Random
    corrupt: float = 0.0
    corrupt_frame: float = 0.0
    corrupt_rx: float = 0.0
    drop: float = 0.0
    late: float = 0.0
    late_delay_s: float | None = None
    stats: LinkFaultStats = field(default_factory=LinkFaultStats)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, spec: FaultSpec) -> None:
        """Set one link fault switch; hardware faults are rejected with ``ValueError``."""
        with self._lock:
            match spec.name:
                case "corrupt":
                    self.corrupt = spec.value
                case "corrupt-frame":
                    self.corrupt_frame = spec.value
                case "corrupt-rx":
                    self.corrupt_rx = spec.value
                case "drop":
                    self.drop = spec.value
                case "late":
                    self.late = spec.value
                case "late-ms":
                    self.late_delay_s = spec.value / 1000
                case _:
                    raise ValueError(f"{spec.name} is not a link fault")
        logger.info("link fault %s switched", spec)

    @property
    def effective_late_delay_s(self) -> float:
        if self.late_delay_s is not None:
            return self.late_delay_s
        longest_timeout = LinkTiming(self.baudrate).reply_timeout_s(MAX_FRAME_SIZE)
        return LATE_TIMEOUT_FACTOR * longest_timeout

    def settings(self) -> dict[str, float]:
        with self._lock:
            return {
                "corrupt": self.corrupt,
                "corrupt-frame": self.corrupt_frame,
                "corrupt-rx": self.corrupt_rx,
                "drop": self.drop,
                "late": self.late,
                "late-ms": self.effective_late_delay_s * 1000,
            }

    def outgoing(self, data: bytes) -> list[OutgoingFrame]:
        """Split the board's output into frames and apply drop, late and corruption."""
        frames: list[OutgoingFrame] = []
        with self._lock:
            for frame in split_frames(data):
                is_event = frame[_TYPE_OFFSET] in _EVENT_TYPES
                if self.drop and self.rng.random() < self.drop:
                    self.stats.frames_dropped += 1
                    logger.debug("dropped frame of type %#04x", frame[_TYPE_OFFSET])
                    continue
                delay = 0.0
                if not is_event and self.late and self.rng.random() < self.late:
                    delay = self.effective_late_delay_s
                    self.stats.replies_delayed += 1
                frames.append(OutgoingFrame(self._corrupt_frame(frame), delay))
        return frames

    def incoming(self, data: bytes) -> bytes:
        """Apply ``corrupt-rx`` to bytes the board receives."""
        with self._lock:
            if not self.corrupt_rx:
                return data
            corrupted = bytearray(data)
            for index in range(len(corrupted)):
                if self.rng.random() < self.corrupt_rx:
                    corrupted[index] ^= 1 << self.rng.randrange(8)
                    self.stats.rx_bytes_corrupted += 1
            return bytes(corrupted)

    def _corrupt_frame(self, frame: bytes) -> bytes:
        if not (self.corrupt or self.corrupt_frame):
            return frame
        corrupted = bytearray(frame)
        if self.corrupt_frame and self.rng.random() < self.corrupt_frame:
            # XOR with a non-zero value always changes the byte.
            corrupted[self.rng.randrange(len(corrupted))] ^= self.rng.randrange(1, 256)
            self.stats.frames_corrupted += 1
        if self.corrupt:
            for index in range(len(corrupted)):
                if self.rng.random() < self.corrupt:
                    corrupted[index] ^= 1 << self.rng.randrange(8)
                    self.stats.bytes_corrupted += 1
        return bytes(corrupted)


def split_frames(data: bytes) -> list[bytes]:
    """Split concatenated encoder output into frames; raises ``ValueError`` on any other bytes."""
    frames: list[bytes] = []
    offset = 0
    while offset < len(data):
        if data[offset : offset + len(SOF)] != SOF or len(data) - offset < HEADER_SIZE:
            raise ValueError(f"board output at offset {offset} is not the start of a frame")
        end = offset + HEADER_SIZE + data[offset + _LENGTH_OFFSET] + TRAILER_SIZE
        if end > len(data):
            raise ValueError(f"board output ends inside a frame that starts at offset {offset}")
        frames.append(data[offset:end])
        offset = end
    return frames
