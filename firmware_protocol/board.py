"""Board side of the link, with no I/O: the rules every board firmware follows.

``BoardLink`` is the reference for firmware authors and the core of the
simulator's virtual board. It filters frames by address, answers a
retransmitted request from its reply cache instead of acting twice, and
keeps unacknowledged events in a queue that it pushes to the host (point to
point) or hands out on ``PollEvent`` (multi-drop). What a request does to the
hardware is left to the ``handler`` callable.
"""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from firmware_protocol.codec import Packet, decode_packet, encode_packet
from firmware_protocol.decoder import FrameDecoder
from firmware_protocol.errors import MalformedPayloadError, MessageError
from firmware_protocol.frame import ADDRESS_ANY, PROTOCOL_VERSION, Frame
from firmware_protocol.messages import (
    AckEvent,
    AckEventReply,
    ErrorCode,
    ErrorReply,
    Event,
    Hello,
    PollEvent,
    PollEventReply,
    Reply,
    Request,
)

# A pushed event that is not acknowledged within this time is sent again.
EVENT_RESEND_MS = 200
EVENT_QUEUE_SIZE = 16

RequestHandler = Callable[[Request], Reply]


@dataclass(slots=True)
class BoardStats:
    rx_frames: int = 0
    repeated_requests: int = 0
    ignored_frames: int = 0
    events_dropped: int = 0
    events_sent: int = 0


@dataclass(slots=True)
class _CachedReply:
    seq: int
    type_code: int
    payload: bytes
    wire: bytes


class BoardLink:
    """The board's end of the link; see the module docstring."""

    def __init__(
        self,
        *,
        address: int,
        handler: RequestHandler,
        push_events: bool = True,
        event_queue_size: int = EVENT_QUEUE_SIZE,
    ) -> None:
        self.address = address
        self.handler = handler
        self.push_events = push_events
        self.stats = BoardStats()
        self.decoder = FrameDecoder()
        self._cache: _CachedReply | None = None
        self._events: deque[tuple[int, Event]] = deque()
        self._event_queue_size = event_queue_size
        self._next_event_seq = 0
        self._event_sent_at: float | None = None
        self._output = bytearray()

    @property
    def events_pending(self) -> int:
        return len(self._events)

    def receive(self, data: bytes, now: float) -> None:
        """Feed bytes from the line; replies are queued in ``data_to_send``."""
        for frame in self.decoder.feed(data):
            self._handle_frame(frame, now)

    def flush_partial(self, now: float) -> None:
        """Drop a partial frame after the inter-frame gap passed with no byte."""
        for frame in self.decoder.flush():
            self._handle_frame(frame, now)

    def post_event(self, event: Event, now: float) -> bool:
        """Queue ``event`` for the host; returns False if the queue is full and it was dropped."""
        if len(self._events) >= self._event_queue_size:
            self.stats.events_dropped += 1
            return False
        seq = self._next_event_seq
        self._next_event_seq = seq % 255 + 1
        self._events.append((seq, event))
        if self.push_events and len(self._events) == 1:
            self._push_head(now)
        return True

    def poll(self, now: float) -> None:
        """Resend the oldest pushed event if its acknowledgement is overdue."""
        if not (self.push_events and self._events and self._event_sent_at is not None):
            return
        if now - self._event_sent_at >= EVENT_RESEND_MS / 1000:
            self._push_head(now)

    def next_deadline(self) -> float | None:
        if self.push_events and self._events and self._event_sent_at is not None:
            return self._event_sent_at + EVENT_RESEND_MS / 1000
        return None

    def data_to_send(self) -> bytes:
        data = bytes(self._output)
        self._output.clear()
        return data

    def _push_head(self, now: float) -> None:
        seq, event = self._events[0]
        self._output += encode_packet(Packet(self.address, seq, event))
        self._event_sent_at = now
        self.stats.events_sent += 1

    def _handle_frame(self, frame: Frame, now: float) -> None:
        if frame.address not in (self.address, ADDRESS_ANY):
            self.stats.ignored_frames += 1
            return
        self.stats.rx_frames += 1

        cache = self._cache
        if (
            cache is not None
            and frame.seq == cache.seq
            and frame.type_code == cache.type_code
            and frame.payload == cache.payload
            and frame.type_code != Hello.TYPE
        ):
            self.stats.repeated_requests += 1
            self._output += cache.wire
            return

        reply = self._execute(frame, now)
        if reply is None:
            return
        wire = encode_packet(Packet(self.address, frame.seq, reply))
        self._cache = _CachedReply(frame.seq, frame.type_code, frame.payload, wire)
        self._output += wire

    def _execute(self, frame: Frame, now: float) -> Reply | None:
        try:
            message = decode_packet(frame).message
        except MalformedPayloadError:
            return ErrorReply(frame.type_code, ErrorCode.BAD_LENGTH)
        except MessageError:
            return ErrorReply(frame.type_code, ErrorCode.UNKNOWN_TYPE)
        if not isinstance(message, Request):
            self.stats.ignored_frames += 1
            return None

        if isinstance(message, Hello):
            self._cache = None
            if message.host_version < PROTOCOL_VERSION:
                return ErrorReply(frame.type_code, ErrorCode.UNSUPPORTED_VERSION)
        if isinstance(message, AckEvent):
            return self._acknowledge(message.event_seq, now)
        if isinstance(message, PollEvent):
            if not self._events:
                return PollEventReply(0)
            seq, event = self._events[0]
            return PollEventReply(len(self._events), seq, event)
        return self.handler(message)

    def _acknowledge(self, seq: int, now: float) -> Reply:
        if self._events and self._events[0][0] == seq:
            self._events.popleft()
            self._event_sent_at = None
            if self.push_events and self._events:
                self._push_head(now)
        return AckEventReply(seq)
