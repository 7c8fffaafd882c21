"""Exceptions raised by the protocol package.

::

    ProtocolError
     ├── EncodeError          a message field does not fit its wire type (caller's bug)
     ├── MessageError         a frame passed its CRC but is not a valid message
     │    ├── UnknownMessageTypeError
     │    └── MalformedPayloadError
     └── LinkStateError       the link state machine was driven through an illegal transition

The frame decoder raises none of these: garbage on the line is counted in its
statistics and skipped.
"""


class ProtocolError(Exception):
    """Base class of every error raised by ``firmware_protocol``."""


class EncodeError(ProtocolError, ValueError):
    """A message field is out of range for its wire type."""


class MessageError(ProtocolError):
    """A frame with a valid CRC whose type or payload is not a valid message."""

    def __init__(self, message: str, *, type_code: int) -> None:
        super().__init__(message)
        self.type_code = type_code


class UnknownMessageTypeError(MessageError):
    """The frame's TYPE byte names no message of this protocol version."""


class MalformedPayloadError(MessageError):
    """The payload has the wrong length or a field value outside its enumeration."""


class LinkStateError(ProtocolError):
    """The link state machine received an event that its current state does not allow."""

    def __init__(self, state: str, event: str, address: int) -> None:
        super().__init__(
            f"link to board {address:#04x}: event {event} is not allowed in state {state}"
        )
        self.state = state
        self.event = event
        self.address = address
