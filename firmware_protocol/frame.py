"""Frame layout and the frame encoder.

Every frame on the wire, request, reply or event, has the same layout::

    offset  0      2     3      4     5      6     7      8              8+LEN
           +------+-----+------+-----+------+-----+------+--------------+-----------+
           | SOF  | VER | ADDR | SEQ | TYPE | LEN | HCHK | PAYLOAD      | CRC16     |
           | A5 5A|  1  |  1   |  1  |  1   |  1  |  1   | LEN (0..255) | 2, LE     |
           +------+-----+------+-----+------+-----+------+--------------+-----------+

    SOF     start of frame, the bytes 0xA5 0x5A
    VER     framing version, 1
    ADDR    RS-485 address of the board the request goes to, or that sends
            the reply or event; 0xFF in a request means "whichever board hears it"
    SEQ     request sequence number, echoed by the reply; in an event frame,
            the board's event sequence number
    TYPE    message type: requests 0x01-0x3F, events 0x40-0x7F,
            replies are the request's type | 0x80, 0xFF is the error reply
    LEN     payload length in bytes
    HCHK    CRC-8/SMBUS over VER, ADDR, SEQ, TYPE and LEN
    PAYLOAD message fields, multi-byte integers little-endian
    CRC16   CRC-16/CCITT-FALSE over VER through the last payload byte
            (HCHK included), sent low byte first

The header check lets a receiver reject a corrupted LEN before it waits for a
payload that will never come; the CRC covers everything after SOF.
"""

from dataclasses import dataclass

from firmware_protocol.crc import crc8, crc16
from firmware_protocol.errors import EncodeError

SOF = b"\xa5\x5a"
PROTOCOL_VERSION = 1
HEADER_SIZE = 8
TRAILER_SIZE = 2
MAX_PAYLOAD_SIZE = 255
MAX_FRAME_SIZE = HEADER_SIZE + MAX_PAYLOAD_SIZE + TRAILER_SIZE

# Board addresses on a multi-drop bus are 1..247, as on Modbus RTU; 0xFF
# addresses whichever single board is on a point-to-point link.
MIN_ADDRESS = 1
MAX_ADDRESS = 247
ADDRESS_ANY = 0xFF


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame whose header check and CRC are valid; the payload is not parsed."""

    address: int
    seq: int
    type_code: int
    payload: bytes
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        for name in ("address", "seq", "type_code", "version"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise EncodeError(f"frame {name} {value} is outside 0..255")
        if len(self.payload) > MAX_PAYLOAD_SIZE:
            raise EncodeError(
                f"payload of {len(self.payload)} bytes exceeds the maximum of {MAX_PAYLOAD_SIZE}"
            )


def header_check(version: int, address: int, seq: int, type_code: int, length: int) -> int:
    """Return the HCHK byte for the five header fields."""
    return crc8(bytes((version, address, seq, type_code, length)))


def encode_frame(frame: Frame) -> bytes:
    """Return the bytes of ``frame`` as they go on the wire."""
    length = len(frame.payload)
    header = bytes((frame.version, frame.address, frame.seq, frame.type_code, length))
    body = header + bytes((crc8(header),)) + frame.payload
    return SOF + body + crc16(body).to_bytes(2, "little")


def wire_time_s(byte_count: int, baudrate: int) -> float:
    """Return how long ``byte_count`` bytes take on an 8N1 line (10 bits per byte)."""
    return byte_count * 10 / baudrate
