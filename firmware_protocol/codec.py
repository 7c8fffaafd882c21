"""Messages to frames and back: the layer between ``frame`` and ``messages``."""

from dataclasses import dataclass

from firmware_protocol.errors import UnknownMessageTypeError
from firmware_protocol.frame import Frame, encode_frame
from firmware_protocol.messages import MESSAGE_TYPES, Message


@dataclass(frozen=True, slots=True)
class Packet:
    """A parsed frame: the addressing fields and the typed message."""

    address: int
    seq: int
    message: Message


def encode_packet(packet: Packet) -> bytes:
    """Return the wire bytes of ``packet``; raises ``EncodeError`` on out-of-range fields."""
    message = packet.message
    return encode_frame(Frame(packet.address, packet.seq, message.TYPE, message.encode_payload()))


def decode_packet(frame: Frame) -> Packet:
    """Parse a frame's payload; raises ``UnknownMessageTypeError`` or ``MalformedPayloadError``."""
    message_type = MESSAGE_TYPES.get(frame.type_code)
    if message_type is None:
        raise UnknownMessageTypeError(
            f"no message has type {frame.type_code:#04x}", type_code=frame.type_code
        )
    return Packet(frame.address, frame.seq, message_type.decode_payload(frame.payload))
