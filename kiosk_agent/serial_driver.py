"""The cabinet board's serial port, driven from a thread of its own.

pyserial blocks, so the port is read and written by one worker thread that
runs ``firmware_protocol.link.HostLink``. The asyncio side calls ``request``
and awaits the outcome; events and link status changes are handed back to the
event loop with ``call_soon_threadsafe``, which is the only place where work
crosses from the worker thread to the loop. ``request`` interrupts the worker's
blocking read with pyserial's ``cancel_read``, so a request goes out at once
instead of after the read's timeout.

When the port fails (USB unplugged, pty closed), every request in flight ends
with ``Aborted``, the status callback reports the link down, and the worker
reopens the port with capped exponential backoff and jitter. Once it is open
again it repeats the handshake before reporting the link up.
"""

import asyncio
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial

from firmware_protocol.decoder import DecoderStats
from firmware_protocol.frame import PROTOCOL_VERSION
from firmware_protocol.link import (
    Aborted,
    EventReceived,
    FrameRejected,
    HostLink,
    LinkTiming,
    Outcome,
    TimedOut,
)
from firmware_protocol.messages import Event, Hello, HelloReply, Request

logger = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
# A port that stays unopenable is logged on the first and on every this many attempts.
OPEN_FAILURE_LOG_EVERY = 20
# Maximum time the worker blocks in a read while no reply is due, so that it notices
# when a handshake retry is due. request() and stop() interrupt the read.
READ_SLICE_S = 0.05
# Pause between handshakes while the board does not respond.
HANDSHAKE_RETRY_S = 1.0


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """Whether the board answers, with its handshake when it does."""

    up: bool
    board: HelloReply | None = None
    error: str = ""


EventCallback = Callable[[int, Event], None]
StatusCallback = Callable[[LinkStatus], None]


@dataclass
class _Submission:
    request: Request
    future: "asyncio.Future[Outcome]"


class SerialDriver:
    """Owns the port and its worker thread; see the module docstring."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int,
        loop: asyncio.AbstractEventLoop,
        on_event: EventCallback,
        on_status: StatusCallback,
        address: int = 0xFF,
    ) -> None:
        self.port = port
        self.timing = LinkTiming(baudrate)
        self.address = address
        self.loop = loop
        self.on_event = on_event
        self.on_status = on_status
        self.status = LinkStatus(up=False)
        self.reconnects = 0
        self._submissions: queue.SimpleQueue[_Submission] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"serial {port}", daemon=True)
        self._rng = random.Random()
        self._hello_id = -1
        self._next_hello_at = 0.0
        # Line counters of the port's current link; replaced when the port reopens.
        self.decoder_stats = DecoderStats()
        # The open port, whose read request() interrupts. The lock keeps the port from
        # being closed between the check and cancel_read(), which writes to its pipe.
        self._port: serial.Serial | None = None
        self._port_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._interrupt_read()
        self._thread.join(timeout_s)

    async def request(self, request: Request) -> Outcome:
        """Send ``request`` to the board and return its outcome.

        The outcome is ``ReplyReceived``, ``Rejected``, ``TimedOut``,
        ``UnlockVerified`` or ``Aborted`` (the port failed or was down).
        """
        future: asyncio.Future[Outcome] = self.loop.create_future()
        self._submissions.put(_Submission(request, future))
        self._interrupt_read()
        return await future

    def _interrupt_read(self) -> None:
        """Make the worker's blocking read return now, so that it looks for work."""
        with self._port_lock:
            if self._port is not None:
                self._port.cancel_read()

    # Worker thread.

    def _run(self) -> None:
        delay = RECONNECT_MIN_S
        failures = 0
        while not self._stop.is_set():
            try:
                port = serial.Serial(self.port, self.timing.baudrate, timeout=READ_SLICE_S)
            except (serial.SerialException, OSError) as exc:
                failures += 1
                if failures == 1 or failures % OPEN_FAILURE_LOG_EVERY == 0:
                    logger.warning(
                        "cannot open serial port %s (attempt %d): %s; retrying",
                        self.port,
                        failures,
                        exc,
                    )
                self._set_status(LinkStatus(up=False, error=f"cannot open {self.port}: {exc}"))
                self._fail_waiting("serial port unavailable")
                self._stop.wait(delay * self._rng.uniform(0.5, 1.0))
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue

            logger.info("opened serial port %s at %d baud", self.port, self.timing.baudrate)
            failures = 0
            with self._port_lock:
                self._port = port
            try:
                self._serve(port)
                delay = RECONNECT_MIN_S
            except (serial.SerialException, OSError) as exc:
                logger.warning("serial port %s failed: %s; reopening", self.port, exc)
                self._set_status(LinkStatus(up=False, error=str(exc)))
                self.reconnects += 1
            finally:
                with self._port_lock:
                    self._port = None
                    port.close()

    def _serve(self, port: serial.Serial) -> None:
        link = HostLink(address=self.address, timing=self.timing)
        self.decoder_stats = link.decoder.stats
        futures: dict[int, asyncio.Future[Outcome]] = {}
        self._hello_id = -1
        self._next_hello_at = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if not self.status.up and self._hello_id < 0 and now >= self._next_hello_at:
                    self._hello_id = link.submit(Hello(PROTOCOL_VERSION), now)
                self._take_submissions(link, futures, now)

                outgoing = link.data_to_send()
                if outgoing:
                    port.write(outgoing)

                deadline = link.next_deadline()
                wait = READ_SLICE_S if deadline is None else deadline - time.monotonic()
                port.timeout = min(max(wait, 0.001), READ_SLICE_S)
                data = port.read(max(port.in_waiting, 1))
                now = time.monotonic()
                outcomes = link.receive(data, now) if data else []
                outcomes += link.poll(now)
                for outcome in outcomes:
                    self._dispatch(outcome, futures)
        finally:
            for outcome in link.abort():
                self._dispatch(outcome, futures)
            self._fail_waiting("serial port closed")

    def _take_submissions(
        self, link: HostLink, futures: dict[int, "asyncio.Future[Outcome]"], now: float
    ) -> None:
        while True:
            try:
                submission = self._submissions.get_nowait()
            except queue.Empty:
                return
            if not self.status.up:
                self._resolve(submission.future, Aborted(0, submission.request, was_sent=False))
                continue
            futures[link.submit(submission.request, now)] = submission.future

    def _dispatch(self, outcome: Outcome, futures: dict[int, "asyncio.Future[Outcome]"]) -> None:
        if isinstance(outcome, EventReceived):
            self.loop.call_soon_threadsafe(self._call_event, outcome.seq, outcome.event)
            return
        if isinstance(outcome, FrameRejected):
            logger.warning(
                "board sent an invalid frame (type %#04x): %s",
                outcome.frame.type_code,
                outcome.error,
            )
            return

        if outcome.request_id == self._hello_id:
            self._hello_id = -1
            self._finish_handshake(outcome)
            return
        future = futures.pop(outcome.request_id, None)
        if future is not None:
            self._resolve(future, outcome)
        if isinstance(outcome, TimedOut) and self.status.up:
            logger.warning(
                "board on %s did not respond to %s after %d attempts",
                self.port,
                type(outcome.request).__name__,
                outcome.attempts,
            )
            self._set_status(LinkStatus(up=False, error="board does not answer"))

    def _finish_handshake(self, outcome: Outcome) -> None:
        reply = getattr(outcome, "reply", None)
        if isinstance(reply, HelloReply):
            logger.info(
                "board %08x on %s: firmware %d.%d.%d, %d doors, %d shelves",
                reply.serial_number,
                self.port,
                reply.firmware_major,
                reply.firmware_minor,
                reply.firmware_patch,
                reply.doors,
                reply.shelves,
            )
            self._set_status(LinkStatus(up=True, board=reply))
        else:
            self._next_hello_at = time.monotonic() + HANDSHAKE_RETRY_S
            self._set_status(LinkStatus(up=False, error=f"handshake failed: {outcome}"))

    def _fail_waiting(self, reason: str) -> None:
        while True:
            try:
                submission = self._submissions.get_nowait()
            except queue.Empty:
                return
            logger.debug("request %s dropped: %s", submission.request, reason)
            self._resolve(submission.future, Aborted(0, submission.request, was_sent=False))

    def _resolve(self, future: "asyncio.Future[Outcome]", outcome: Outcome) -> None:
        def settle() -> None:
            if not future.done():
                future.set_result(outcome)

        self.loop.call_soon_threadsafe(settle)

    def _set_status(self, status: LinkStatus) -> None:
        if status.up == self.status.up and status.board == self.status.board:
            self.status = status
            return
        self.status = status
        self.loop.call_soon_threadsafe(self._call_status, status)

    # Event-loop side: a failing callback is logged and never stops the driver.

    def _call_event(self, seq: int, event: Event) -> None:
        try:
            self.on_event(seq, event)
        except Exception:
            logger.exception("event handler failed for %s (seq %d)", event, seq)

    def _call_status(self, status: LinkStatus) -> None:
        try:
            self.on_status(status)
        except Exception:
            logger.exception("status handler failed for %s", status)
