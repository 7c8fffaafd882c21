"""A minimal host for a board's serial port, built only on pyserial and firmware_protocol.

``HostProbe`` drives ``firmware_protocol.link.HostLink`` over a real serial
port (or a virtual board's pty). It writes the link's bytes, reads the board's,
and passes the time to the link. Tests and diagnostics use it to talk to a board
as the kiosk agent would, and it imports nothing from the simulator.
"""

import math
import select
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

import serial

from firmware_protocol.frame import ADDRESS_ANY
from firmware_protocol.link import (
    DEFAULT_RETRIES,
    EventReceived,
    FrameRejected,
    HostLink,
    LinkTiming,
    Outcome,
    ReplyReceived,
)
from firmware_protocol.messages import Event, Hello, HelloReply, Reply, Request

PROTOCOL_VERSION = 1
DEFAULT_TIMEOUT_S = 5.0
# ``run_until`` checks its condition at least this often.
CONDITION_CHECK_S = 0.01

_E = TypeVar("_E", bound=Event)
_R = TypeVar("_R", bound=Reply)


class ProbeError(Exception):
    """A request did not end with the expected reply, or a wait timed out."""


class HostProbe:
    """Host end of one serial link; see the module docstring."""

    def __init__(
        self,
        path: str,
        baudrate: int,
        *,
        address: int = ADDRESS_ANY,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.serial = serial.Serial(path, baudrate, timeout=0)
        self.link = HostLink(address=address, timing=LinkTiming(baudrate, retries))
        self.events: deque[EventReceived] = deque()
        self.rejected_frames: list[FrameRejected] = []
        self._outcomes: dict[int, Outcome] = {}

    def close(self) -> None:
        self.link.abort()
        self.serial.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def submit(self, request: Request) -> int:
        """Queue ``request`` and send it when the link is free; returns its request id."""
        request_id = self.link.submit(request, time.monotonic())
        self._write_output()
        return request_id

    def request(self, request: Request, timeout_s: float = DEFAULT_TIMEOUT_S) -> Outcome:
        """Send ``request`` and return its outcome: a reply, a rejection or a timeout."""
        request_id = self.submit(request)
        return self.wait_outcome(request_id, timeout_s)

    def call(
        self, request: Request, reply_type: type[_R], timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> _R:
        """Send ``request`` and return its reply; raises ``ProbeError`` for any other outcome."""
        outcome = self.request(request, timeout_s)
        if not isinstance(outcome, ReplyReceived) or not isinstance(outcome.reply, reply_type):
            raise ProbeError(f"{request} ended with {outcome}, expected a {reply_type.__name__}")
        return outcome.reply

    def handshake(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> HelloReply:
        return self.call(Hello(PROTOCOL_VERSION), HelloReply, timeout_s)

    def wait_outcome(self, request_id: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> Outcome:
        deadline = time.monotonic() + timeout_s
        while request_id not in self._outcomes:
            if time.monotonic() >= deadline:
                raise ProbeError(f"request {request_id} has no outcome after {timeout_s} s")
            self.pump(deadline)
        return self._outcomes.pop(request_id)

    def wait_event(self, event_type: type[_E], timeout_s: float = DEFAULT_TIMEOUT_S) -> _E:
        """Return the oldest received event of ``event_type``, waiting up to ``timeout_s``.

        Events of other types stay queued in ``events``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            for received in self.events:
                if isinstance(received.event, event_type):
                    self.events.remove(received)
                    return received.event
            if time.monotonic() >= deadline:
                seen = [type(received.event).__name__ for received in self.events]
                raise ProbeError(
                    f"no {event_type.__name__} within {timeout_s} s; queued events: {seen}"
                )
            self.pump(deadline)

    def pump(self, until: float) -> None:
        """Move bytes and time once: wait for input until ``until`` or the link's next deadline."""
        now = time.monotonic()
        self._collect(self.link.poll(now))
        self._write_output()
        link_deadline = self.link.next_deadline()
        wake_at = min(until, link_deadline if link_deadline is not None else math.inf)
        readable, _, _ = select.select([self.serial.fileno()], [], [], max(0.0, wake_at - now))
        if readable:
            data = self.serial.read(self.serial.in_waiting or 1)
            if data:
                self._collect(self.link.receive(data, time.monotonic()))
        self._collect(self.link.poll(time.monotonic()))
        self._write_output()

    def run_for(self, seconds: float) -> None:
        """Keep the link running for ``seconds``: acknowledge events, retransmit, time out."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pump(deadline)

    def run_until(
        self, condition: Callable[[], bool], description: str, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        """Keep the link running until ``condition()`` is true; raises ``ProbeError`` on timeout."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            now = time.monotonic()
            if now >= deadline:
                raise ProbeError(f"timed out after {timeout_s} s waiting for {description}")
            self.pump(min(deadline, now + CONDITION_CHECK_S))

    def _write_output(self) -> None:
        data = self.link.data_to_send()
        if data:
            self.serial.write(data)

    def _collect(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, EventReceived):
                self.events.append(outcome)
            elif isinstance(outcome, FrameRejected):
                self.rejected_frames.append(outcome)
            else:
                self._outcomes[outcome.request_id] = outcome
