"""Serial line of a virtual board on a pseudo-terminal, paced at the configured baud rate.

The host opens the pty's slave path (``/dev/pts/N``) with pyserial as if it were
a USB-RS485 adapter. A pty moves bytes instantly, so ``BoardRunner`` adds the
wire time of a real 8N1 line (10 bits per byte) in both directions. Received
bytes reach the firmware only after their wire time. Sent bytes are written in
small chunks, each at the time its last byte would have left the UART.

``BoardRunner`` runs one I/O thread. It sleeps in ``poll`` until the next
deadline (a byte due on the wire, the board's next timer, or a wake-up from a
``Cabinet`` action), so an idle board costs no CPU. The physical models stay in
``Cabinet`` and ``VirtualBoard``; this module only moves bytes and time.
"""

import contextlib
import errno
import logging
import math
import os
import select
import threading
import tty
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from firmware_protocol.frame import wire_time_s
from firmware_protocol.link import LinkTiming
from simulator.cabinet import Cabinet

logger = logging.getLogger(__name__)

# Each write carries about this much wire time, and pacing costs one wake-up per
# chunk. At 9600 baud a chunk is 3 bytes, at 115200 baud 46 bytes.
TX_CHUNK_S = 0.004
# While no host has the tty open, the master end reports a hang-up on every poll,
# so the loop checks for a host at this interval instead. It is well below the
# shortest reply timeout (about 44 ms at 115200 baud), so the reply to a host's
# first request arrives before the host retransmits it.
HANGUP_POLL_S = 0.02
READ_SIZE = 4096


class PtyPort:
    """A pseudo-terminal whose slave ``path`` the host opens; the board uses ``master_fd``.

    The slave end is put in raw mode so that bytes pass unchanged, then closed,
    so that the master reports a hang-up whenever no host has the tty open.
    """

    def __init__(self) -> None:
        master_fd, slave_fd = os.openpty()
        try:
            tty.setraw(slave_fd)
            self.path = os.ttyname(slave_fd)
        finally:
            os.close(slave_fd)
        os.set_blocking(master_fd, False)
        self.master_fd = master_fd

    def close(self) -> None:
        if self.master_fd >= 0:
            os.close(self.master_fd)
            self.master_fd = -1


@dataclass(slots=True)
class _TxFrame:
    data: bytes
    not_before: float
    offset: int = 0


@dataclass(slots=True)
class LineStats:
    bytes_received: int = 0
    bytes_sent: int = 0
    # Bytes the board sent while no host had the tty open, or while the host did not read.
    bytes_lost: int = 0
    host_connections: int = 0


class BoardRunner:
    """Connects a ``Cabinet``'s board to a pty; ``start`` and ``stop`` control its thread.

    The cabinet's clock must be a real clock (``MonotonicClock``), because pacing
    sleeps in ``poll``.
    """

    def __init__(
        self, cabinet: Cabinet, port: PtyPort | None = None, *, tty_link: Path | None = None
    ) -> None:
        self.cabinet = cabinet
        self.port = port or PtyPort()
        # A stable path to the tty, re-pointed after a replug as udev does for a USB adapter.
        self.tty_link = tty_link
        self._unplug_for_s: float | None = None
        self._injected: deque[bytes] = deque()
        self.stats = LineStats()
        baud = cabinet.config.baud
        self._byte_s = wire_time_s(1, baud)
        self._chunk_bytes = max(1, math.floor(TX_CHUNK_S / self._byte_s))
        self._idle_gap_s = LinkTiming(baud).idle_gap_s
        self._rx_pending: deque[tuple[float, bytes]] = deque()
        self._rx_line_free_at = -math.inf
        self._last_rx_done: float | None = None
        self._tx_frames: deque[_TxFrame] = deque()
        self._tx_line_free_at = -math.inf
        self._host_connected = False
        self._wake_read_fd, self._wake_write_fd = os.pipe()
        os.set_blocking(self._wake_read_fd, False)
        os.set_blocking(self._wake_write_fd, False)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"board-io-{cabinet.config.address}", daemon=True
        )
        cabinet.add_listener(self.wake)

    @property
    def tty_path(self) -> str:
        return self.port.path

    @property
    def host_connected(self) -> bool:
        return self._host_connected

    def start(self) -> None:
        """Start the I/O thread and the board, which posts BoardStarted."""
        self._point_link()
        self._thread.start()
        self.cabinet.start()
        logger.info("board serial line on %s at %d baud", self.port.path, self.cabinet.config.baud)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the I/O thread and close the pty."""
        self._stop.set()
        self.wake()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.error("board I/O thread did not stop within %.1f s", timeout_s)
                return
        self.port.close()
        for fd in (self._wake_read_fd, self._wake_write_fd):
            os.close(fd)
        logger.info("board serial line on %s stopped", self.port.path)

    def unplug(self, down_s: float) -> None:
        """Pull the cable: close the tty now and offer a new one after ``down_s`` seconds.

        The board keeps running and queues its events meanwhile, as a board does
        when its USB adapter is pulled; only the serial line goes away.
        """
        if down_s < 0:
            raise ValueError(f"down time {down_s} s must not be negative")
        self._unplug_for_s = down_s
        self.wake()

    def inject(self, data: bytes) -> None:
        """Send ``data`` to the host as line noise, outside any frame."""
        self._injected.append(data)
        self.wake()

    def _point_link(self) -> None:
        if self.tty_link is None:
            return
        staging = self.tty_link.with_name(self.tty_link.name + ".new")
        staging.unlink(missing_ok=True)
        staging.symlink_to(self.port.path)
        os.replace(staging, self.tty_link)

    def _replug(self, down_s: float) -> None:
        logger.info("serial line on %s unplugged for %.1f s", self.port.path, down_s)
        self._drop_output("cable unplugged")
        self.port.close()
        self._host_connected = False
        self._stop.wait(down_s)
        self.port = PtyPort()
        self._point_link()
        logger.info("serial line plugged in again on %s", self.port.path)

    def wake(self) -> None:
        """Make the I/O loop look at the board now, for example after a person's action."""
        # A full pipe means a wake-up is pending anyway; a closed one means the runner stopped.
        with contextlib.suppress(OSError):
            os.write(self._wake_write_fd, b"\0")

    # The loop.

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
        except Exception:
            logger.exception("board I/O loop on %s failed", self.port.path)
            raise

    def _step(self) -> None:
        if self._unplug_for_s is not None:
            down_s, self._unplug_for_s = self._unplug_for_s, None
            self._replug(down_s)
        clock = self.cabinet.clock
        now = clock.now()
        while self._injected and self._host_connected:
            self._tx_frames.append(_TxFrame(self._injected.popleft(), now))
        self._check_host(now)
        if self._host_connected:
            self._read_master(now)

        board = self.cabinet.board
        with self.cabinet.lock:
            while self._rx_pending and self._rx_pending[0][0] <= now:
                ready_at, data = self._rx_pending.popleft()
                board.receive(data, now)
                self._last_rx_done = ready_at
            if self._partial_frame_expired(now):
                board.flush_partial(now)
            board.update(now)
            output = board.data_to_send()
            board_deadline = board.next_deadline()
            partial_frame = board.link.decoder.pending > 0

        if output:
            self._queue_output(output, now)
        tx_deadline = self._transmit(clock.now())

        deadlines = [board_deadline, tx_deadline]
        if self._rx_pending:
            deadlines.append(self._rx_pending[0][0])
        if partial_frame and self._last_rx_done is not None:
            deadlines.append(self._last_rx_done + self._idle_gap_s)
        next_deadline = min((t for t in deadlines if t is not None), default=None)
        self._wait(next_deadline, clock.now())

    def _partial_frame_expired(self, now: float) -> bool:
        return (
            not self._rx_pending
            and self.cabinet.board.link.decoder.pending > 0
            and self._last_rx_done is not None
            and now - self._last_rx_done >= self._idle_gap_s
        )

    def _wait(self, deadline: float | None, now: float) -> None:
        timeout_s = None if deadline is None else max(0.0, deadline - now)
        if not self._host_connected:
            timeout_s = HANGUP_POLL_S if timeout_s is None else min(timeout_s, HANGUP_POLL_S)
        poller = select.poll()
        poller.register(self._wake_read_fd, select.POLLIN)
        if self._host_connected:
            poller.register(self.port.master_fd, select.POLLIN)
        timeout_ms = None if timeout_s is None else math.ceil(timeout_s * 1000)
        poller.poll(timeout_ms)
        self._drain_wake_pipe()

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_read_fd, READ_SIZE):
                pass
        except BlockingIOError:
            pass

    # Host presence and reading.

    def _check_host(self, now: float) -> None:
        poller = select.poll()
        poller.register(self.port.master_fd, select.POLLIN)
        events = dict(poller.poll(0)).get(self.port.master_fd, 0)
        connected = not events & select.POLLHUP
        if connected == self._host_connected:
            return
        self._host_connected = connected
        if connected:
            self.stats.host_connections += 1
            logger.info("host opened %s", self.port.path)
        else:
            self._drop_output("host closed the tty")
            logger.info("host closed %s", self.port.path)

    def _read_master(self, now: float) -> None:
        while True:
            try:
                data = os.read(self.port.master_fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno == errno.EIO:
                    # The host closed the slave between the hang-up check and the read.
                    return
                raise
            if not data:
                return
            self.stats.bytes_received += len(data)
            data = self.cabinet.link_faults.incoming(data)
            # The bytes arrive one after another at the baud rate, from whichever is later:
            # now or the end of the bytes still on the wire.
            ready_at = max(now, self._rx_line_free_at) + len(data) * self._byte_s
            self._rx_line_free_at = ready_at
            self._rx_pending.append((ready_at, data))

    # Transmission.

    def _queue_output(self, output: bytes, now: float) -> None:
        if not self._host_connected:
            self.stats.bytes_lost += len(output)
            return
        # A late frame holds back every frame behind it, as the UART of a busy board would.
        for frame in self.cabinet.link_faults.outgoing(output):
            self._tx_frames.append(_TxFrame(frame.data, now + frame.delay_s))

    def _transmit(self, now: float) -> float | None:
        """Write every chunk whose wire time has passed; returns when the next one is due."""
        while self._tx_frames:
            frame = self._tx_frames[0]
            # The chunk follows the previous one on the wire, or starts the frame when due.
            start = max(self._tx_line_free_at, frame.not_before)
            chunk = frame.data[frame.offset : frame.offset + self._chunk_bytes]
            done_at = start + len(chunk) * self._byte_s
            if done_at > now:
                return done_at
            self._write(chunk)
            self._tx_line_free_at = done_at
            frame.offset += len(chunk)
            if frame.offset >= len(frame.data):
                self._tx_frames.popleft()
        return None

    def _write(self, chunk: bytes) -> None:
        try:
            written = os.write(self.port.master_fd, chunk)
        except BlockingIOError:
            written = 0
        except OSError as error:
            if error.errno != errno.EIO:
                raise
            written = 0
        self.stats.bytes_sent += written
        if written < len(chunk):
            # The host does not read, so its buffer is full: a real UART's bytes would be lost too.
            self.stats.bytes_lost += len(chunk) - written
            logger.debug("lost %d bytes: the host is not reading", len(chunk) - written)

    def _drop_output(self, reason: str) -> None:
        lost = sum(len(frame.data) - frame.offset for frame in self._tx_frames)
        if lost:
            self.stats.bytes_lost += lost
            logger.debug("dropped %d bytes of output: %s", lost, reason)
        self._tx_frames.clear()
