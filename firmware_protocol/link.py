"""Host side of the request/reply link, as a state machine with no I/O.

The owner, normally the agent's serial driver, moves bytes and time in and out::

    submit(request, now)   queue a request; returns its request id
    receive(data, now)     bytes read from the port; returns outcomes
    poll(now)              the clock; returns outcomes of timeouts
    data_to_send()         bytes to write to the port
    next_deadline()        when poll() must be called next

Theory of operation. One request is in flight at a time (stop and wait), so
a reply is matched by sequence number and type alone. A request that gets no
reply within the reply timeout is retransmitted unchanged, same sequence
number and bytes, up to ``LinkTiming.retries`` times. The board recognises the
repeat and resends its cached reply instead of acting twice, so retransmitting
an unlock never pulses the lock twice.

When the retries are spent, a request without side effects fails with
``TimedOut``. An ``Unlock`` is never sent again under a new sequence number,
because its effect is unknown: the link instead queries the door's state and
compares the door's last unlock token with the request's, which yields
``UnlockVerified`` with ``executed`` true or false. If that query fails too,
the unlock ends as ``TimedOut`` with ``effect_unknown`` set.

Events arrive at any time. Each is acknowledged with ``AckEvent``, ahead of
queued requests; a repeat of the last event (its acknowledgement was lost) is
acknowledged again and not delivered twice. Event sequence number 0 marks the
first event after a board reset and is always delivered.
"""

import enum
from collections import deque
from dataclasses import dataclass

from firmware_protocol.codec import Packet, decode_packet, encode_packet
from firmware_protocol.decoder import FrameDecoder
from firmware_protocol.errors import LinkStateError, MessageError
from firmware_protocol.frame import ADDRESS_ANY, MAX_FRAME_SIZE, Frame, wire_time_s
from firmware_protocol.messages import (
    AckEvent,
    DoorStateReply,
    DoorStatus,
    ErrorCode,
    ErrorReply,
    Event,
    GetDoorState,
    Hello,
    PollEventReply,
    Reply,
    Request,
    Unlock,
)

# How long a board may take between the last byte of a request and the first
# byte of its reply.
BOARD_REPLY_LATENCY_MS = 20
DEFAULT_RETRIES = 3
# A receiver gives up on a partial frame after this many idle character times.
IDLE_GAP_CHARS = 20
MIN_IDLE_GAP_MS = 5
SUPPORTED_BAUDRATES = (9600, 19200, 38400, 57600, 115200)

HELLO_SEQ = 0


@dataclass(frozen=True, slots=True)
class LinkTiming:
    """Timing of one link; every value derives from the baud rate."""

    baudrate: int = 115200
    retries: int = DEFAULT_RETRIES

    def __post_init__(self) -> None:
        if self.baudrate not in SUPPORTED_BAUDRATES:
            raise ValueError(f"baud rate {self.baudrate} is not one of {SUPPORTED_BAUDRATES}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")

    def reply_timeout_s(self, request_size: int) -> float:
        """Return the wait for a reply: both frames' wire time plus the board's latency."""
        wire = wire_time_s(request_size + MAX_FRAME_SIZE, self.baudrate)
        return wire + BOARD_REPLY_LATENCY_MS / 1000

    @property
    def idle_gap_s(self) -> float:
        return max(wire_time_s(IDLE_GAP_CHARS, self.baudrate), MIN_IDLE_GAP_MS / 1000)


class LinkState(enum.Enum):
    IDLE = "idle"
    AWAITING_REPLY = "awaiting_reply"
    VERIFYING = "verifying"


class LinkInput(enum.Enum):
    SEND = "send"
    REPLY = "reply"
    RETRY = "retry"
    VERIFY = "verify"
    GIVE_UP = "give_up"


TRANSITIONS: dict[tuple[LinkState, LinkInput], LinkState] = {
    (LinkState.IDLE, LinkInput.SEND): LinkState.AWAITING_REPLY,
    (LinkState.AWAITING_REPLY, LinkInput.REPLY): LinkState.IDLE,
    (LinkState.AWAITING_REPLY, LinkInput.RETRY): LinkState.AWAITING_REPLY,
    (LinkState.AWAITING_REPLY, LinkInput.VERIFY): LinkState.VERIFYING,
    (LinkState.AWAITING_REPLY, LinkInput.GIVE_UP): LinkState.IDLE,
    (LinkState.VERIFYING, LinkInput.REPLY): LinkState.IDLE,
    (LinkState.VERIFYING, LinkInput.RETRY): LinkState.VERIFYING,
    (LinkState.VERIFYING, LinkInput.GIVE_UP): LinkState.IDLE,
}


# Outcomes returned to the owner.


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    request_id: int
    request: Request
    reply: Reply


@dataclass(frozen=True, slots=True)
class Rejected:
    """The board answered with an error reply and did nothing."""

    request_id: int
    request: Request
    code: ErrorCode


@dataclass(frozen=True, slots=True)
class TimedOut:
    """No reply after every retry; ``effect_unknown`` if the request may have acted."""

    request_id: int
    request: Request
    attempts: int
    effect_unknown: bool


@dataclass(frozen=True, slots=True)
class UnlockVerified:
    """An unlock's reply was lost; the door state shows whether its pulse happened."""

    request_id: int
    request: Unlock
    executed: bool
    status: DoorStatus


@dataclass(frozen=True, slots=True)
class Aborted:
    """The owner aborted the link (port closed) before the request was answered."""

    request_id: int
    request: Request
    was_sent: bool


@dataclass(frozen=True, slots=True)
class EventReceived:
    seq: int
    event: Event


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """A frame passed its CRC but is not a valid message; the owner should log it."""

    frame: Frame
    error: MessageError


Outcome = (
    ReplyReceived | Rejected | TimedOut | UnlockVerified | Aborted | EventReceived | FrameRejected
)


@dataclass(slots=True)
class LinkStats:
    requests: int = 0
    retransmits: int = 0
    timeouts: int = 0
    stray_replies: int = 0
    foreign_frames: int = 0
    rejected_frames: int = 0
    events: int = 0
    repeated_events: int = 0


@dataclass(slots=True)
class _Pending:
    request_id: int
    request: Request
    internal: bool = False
    # For a verification query: the unlock whose outcome it establishes.
    verifies: "_Pending | None" = None
    seq: int = 0
    wire: bytes = b""
    attempts: int = 0
    deadline: float = 0.0


@dataclass(slots=True)
class _EventFilter:
    last_seq: int | None = None

    def is_repeat(self, seq: int) -> bool:
        if seq != 0 and seq == self.last_seq:
            return True
        self.last_seq = seq
        return False


class HostLink:
    """The host's end of the link to one board; see the module docstring."""

    def __init__(self, *, address: int = ADDRESS_ANY, timing: LinkTiming | None = None) -> None:
        self.address = address
        self.timing = timing or LinkTiming()
        self.state = LinkState.IDLE
        self.stats = LinkStats()
        self.decoder = FrameDecoder()
        self._queue: deque[_Pending] = deque()
        self._in_flight: _Pending | None = None
        self._events = _EventFilter()
        self._output = bytearray()
        self._next_seq = 1
        self._next_request_id = 1
        self._last_rx_at: float | None = None

    # Owner-facing API.

    def submit(self, request: Request, now: float) -> int:
        """Queue ``request`` and return the id its outcome will carry."""
        pending = _Pending(self._next_request_id, request)
        self._next_request_id += 1
        self._queue.append(pending)
        self._start_next(now)
        return pending.request_id

    def receive(self, data: bytes, now: float) -> list[Outcome]:
        """Feed bytes read from the port."""
        self._last_rx_at = now
        outcomes: list[Outcome] = []
        for frame in self.decoder.feed(data):
            outcomes += self._handle_frame(frame, now)
        return outcomes

    def poll(self, now: float) -> list[Outcome]:
        """Handle every deadline that has passed by ``now``."""
        outcomes: list[Outcome] = []
        if (
            self.decoder.pending
            and self._last_rx_at is not None
            and now - self._last_rx_at >= self.timing.idle_gap_s
        ):
            for frame in self.decoder.flush():
                outcomes += self._handle_frame(frame, now)
        pending = self._in_flight
        if pending is not None and now >= pending.deadline:
            outcomes += self._handle_timeout(pending, now)
        return outcomes

    def next_deadline(self) -> float | None:
        deadlines = []
        if self._in_flight is not None:
            deadlines.append(self._in_flight.deadline)
        if self.decoder.pending and self._last_rx_at is not None:
            deadlines.append(self._last_rx_at + self.timing.idle_gap_s)
        return min(deadlines, default=None)

    def data_to_send(self) -> bytes:
        data = bytes(self._output)
        self._output.clear()
        return data

    def abort(self) -> list[Outcome]:
        """Drop every queued and in-flight request, for example when the port vanished."""
        outcomes: list[Outcome] = []
        if self._in_flight is not None:
            origin = self._in_flight.verifies or self._in_flight
            if not origin.internal:
                outcomes.append(Aborted(origin.request_id, origin.request, was_sent=True))
            self._in_flight = None
            self.state = LinkState.IDLE
        for pending in self._queue:
            if not pending.internal:
                outcomes.append(Aborted(pending.request_id, pending.request, was_sent=False))
        self._queue.clear()
        self._output.clear()
        self.decoder = FrameDecoder()
        return outcomes

    @property
    def busy(self) -> bool:
        return self._in_flight is not None or bool(self._queue)

    # Internals.

    def _transition(self, event: LinkInput) -> None:
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise LinkStateError(self.state.value, event.value, self.address) from None

    def _allocate_seq(self, request: Request) -> int:
        if isinstance(request, Hello):
            return HELLO_SEQ
        seq = self._next_seq
        self._next_seq = seq % 255 + 1
        return seq

    def _start_next(self, now: float) -> None:
        if self._in_flight is not None or not self._queue:
            return
        pending = self._queue.popleft()
        self._send(pending, now)
        self._transition(LinkInput.SEND)

    def _send(self, pending: _Pending, now: float) -> None:
        pending.seq = self._allocate_seq(pending.request)
        pending.wire = encode_packet(Packet(self.address, pending.seq, pending.request))
        pending.attempts = 1
        pending.deadline = now + self.timing.reply_timeout_s(len(pending.wire))
        self._output += pending.wire
        self._in_flight = pending
        self.stats.requests += 1

    def _handle_frame(self, frame: Frame, now: float) -> list[Outcome]:
        if self.address != ADDRESS_ANY and frame.address != self.address:
            self.stats.foreign_frames += 1
            return []
        try:
            packet = decode_packet(frame)
        except MessageError as exc:
            self.stats.rejected_frames += 1
            return [FrameRejected(frame, exc)]

        message = packet.message
        if isinstance(message, Event):
            return self._accept_event(packet.seq, message, now)
        if isinstance(message, Reply):
            return self._accept_reply(packet.seq, message, now)
        # A request on the wire is our own echo on a half-duplex bus, or another host.
        self.stats.foreign_frames += 1
        return []

    def _accept_event(self, seq: int, event: Event, now: float) -> list[Outcome]:
        ack = _Pending(0, AckEvent(seq), internal=True)
        self._queue.appendleft(ack)
        self._start_next(now)
        if self._events.is_repeat(seq):
            self.stats.repeated_events += 1
            return []
        self.stats.events += 1
        return [EventReceived(seq, event)]

    def _accept_reply(self, seq: int, reply: Reply, now: float) -> list[Outcome]:
        pending = self._in_flight
        request_type = pending.request.TYPE if pending else None
        matches = (
            pending is not None
            and seq == pending.seq
            and (
                pending.request.reply_type() == reply.TYPE
                or (isinstance(reply, ErrorReply) and reply.request_type == request_type)
            )
        )
        if not matches or pending is None:
            self.stats.stray_replies += 1
            return []

        self._in_flight = None
        self._transition(LinkInput.REPLY)
        outcomes = self._resolve(pending, reply, now)
        self._start_next(now)
        return outcomes

    def _resolve(self, pending: _Pending, reply: Reply, now: float) -> list[Outcome]:
        origin = pending.verifies
        if origin is not None:
            assert isinstance(origin.request, Unlock)
            if isinstance(reply, DoorStateReply) and len(reply.doors) == 1:
                status = reply.doors[0]
                executed = status.last_token == origin.request.token
                return [UnlockVerified(origin.request_id, origin.request, executed, status)]
            return [TimedOut(origin.request_id, origin.request, origin.attempts, True)]

        outcomes: list[Outcome] = []
        if isinstance(reply, PollEventReply) and reply.event is not None:
            outcomes += self._accept_event(reply.event_seq, reply.event, now)
        if pending.internal:
            return outcomes
        if isinstance(reply, ErrorReply):
            outcomes.insert(0, Rejected(pending.request_id, pending.request, reply.code))
        else:
            outcomes.insert(0, ReplyReceived(pending.request_id, pending.request, reply))
        return outcomes

    def _handle_timeout(self, pending: _Pending, now: float) -> list[Outcome]:
        if pending.attempts <= self.timing.retries:
            pending.attempts += 1
            pending.deadline = now + self.timing.reply_timeout_s(len(pending.wire))
            self._output += pending.wire
            self.stats.retransmits += 1
            self._transition(LinkInput.RETRY)
            return []

        self.stats.timeouts += 1
        self._in_flight = None
        outcomes: list[Outcome] = []
        request = pending.request
        if isinstance(request, Unlock) and pending.verifies is None:
            query = _Pending(pending.request_id, GetDoorState(request.door), verifies=pending)
            self._send(query, now)
            self._transition(LinkInput.VERIFY)
            return outcomes

        self._transition(LinkInput.GIVE_UP)
        origin = pending.verifies
        if origin is not None:
            outcomes.append(TimedOut(origin.request_id, origin.request, origin.attempts, True))
        elif not pending.internal:
            effect_unknown = request.HAS_EFFECT
            outcomes.append(TimedOut(pending.request_id, request, pending.attempts, effect_unknown))
        self._start_next(now)
        return outcomes


__all__ = [
    "BOARD_REPLY_LATENCY_MS",
    "DEFAULT_RETRIES",
    "SUPPORTED_BAUDRATES",
    "TRANSITIONS",
    "Aborted",
    "EventReceived",
    "FrameRejected",
    "HostLink",
    "LinkInput",
    "LinkState",
    "LinkStats",
    "LinkTiming",
    "Outcome",
    "Rejected",
    "ReplyReceived",
    "TimedOut",
    "UnlockVerified",
]
