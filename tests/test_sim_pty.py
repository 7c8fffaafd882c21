"""A virtual board on a real pseudo-terminal, opened by the host with real pyserial.

The host side is ``simulator.probe.HostProbe``, which is pyserial plus
``firmware_protocol.link.HostLink`` and nothing else from the simulator, or raw
pyserial with ``firmware_protocol``'s encoder and decoder. Waits have bounded
timeouts; no test sleeps and hopes.
"""

import contextlib
import time
from collections.abc import Callable, Iterator

import pytest
import serial

from firmware_protocol.codec import Packet, decode_packet, encode_packet
from firmware_protocol.crc import crc8
from firmware_protocol.decoder import FrameDecoder
from firmware_protocol.frame import ADDRESS_ANY, Frame, wire_time_s
from firmware_protocol.messages import (
    BoardStarted,
    Diagnostics,
    DiagnosticsReply,
    DoorClosed,
    DoorForced,
    DoorOpened,
    DoorStateReply,
    GetDoorState,
    Hello,
    HelloReply,
    ReadWeights,
    ShelfStatus,
    Unlock,
    UnlockReply,
    WeightsReply,
)
from simulator.cabinet import Cabinet
from simulator.clock import MonotonicClock
from simulator.config import CabinetConfig, ScaleSettings
from simulator.person import Person
from simulator.probe import HostProbe
from simulator.transport import BoardRunner

TEA = "jinzhai-green-tea-250g"
WAIT_S = 5.0


def fast_config(baud: int = 115200) -> CabinetConfig:
    return CabinetConfig(
        doors=2,
        shelves=4,
        baud=baud,
        seed=9,
        scale=ScaleSettings(settle_s=0.2, hand_contact_s=0.1),
    )


@contextlib.contextmanager
def running_board(config: CabinetConfig) -> Iterator[tuple[Cabinet, BoardRunner]]:
    cabinet = Cabinet(config, MonotonicClock())
    runner = BoardRunner(cabinet)
    runner.start()
    try:
        yield cabinet, runner
    finally:
        runner.stop()


def wait_until(condition: Callable[[], bool], description: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {description}")
        time.sleep(0.01)


def read_frame(
    port: serial.Serial, decoder: FrameDecoder, timeout_s: float
) -> tuple[Frame, float, float]:
    """Read until one frame is complete; returns it with the times of its first and last read."""
    deadline = time.monotonic() + timeout_s
    first_read: float | None = None
    while time.monotonic() < deadline:
        data = port.read(port.in_waiting or 1)
        if not data:
            continue
        now = time.monotonic()
        if first_read is None:
            first_read = now
        frames = decoder.feed(data)
        if frames:
            return frames[0], first_read, now
    raise AssertionError(f"no frame within {timeout_s} s")


def test_session_over_pty() -> None:
    with (
        running_board(fast_config()) as (cabinet, runner),
        HostProbe(runner.tty_path, 115200) as host,
    ):
        hello = host.handshake()
        assert hello.doors == 2
        assert hello.shelves == 4
        started = host.wait_event(BoardStarted)
        assert started.uptime_ms < 10_000

        def shelf_stable() -> bool:
            reading = host.call(ReadWeights(), WeightsReply).shelves[0]
            return reading.status == ShelfStatus.STABLE

        # The stability window fills in the first half second after the board starts.
        wait_until(shelf_stable, "shelf 0 to fill its stability window")
        before = host.call(ReadWeights(), WeightsReply)
        assert host.call(Unlock(0, 1500, 0x1234), UnlockReply) == UnlockReply(0, 0x1234)

        student = Person(cabinet, "student-1")
        student.open_door(0)
        opened = host.wait_event(DoorOpened)
        taken = student.take(0, TEA, 2)
        student.close_door(0)
        closed = host.wait_event(DoorClosed)

        assert opened.token == 0x1234
        assert opened.door == 0
        assert closed.door == 0
        assert closed.open_ms == pytest.approx(closed.uptime_ms - opened.uptime_ms, abs=1)
        # The probe acknowledged every event, so the board's queue empties.
        host.run_until(lambda: cabinet.board.link.events_pending == 0, "acknowledgements")
        assert host.link.stats.events == 3

        # The firmware detects the hand at its next sample, so the shelf first reads as moving.
        wait_until(lambda: not shelf_stable(), "shelf 0 to move")
        wait_until(shelf_stable, "shelf 0 to settle")
        after = host.call(ReadWeights(), WeightsReply)
        removed_mg = before.shelves[0].weight_mg - after.shelves[0].weight_mg
        # Two window means with 0.32 g noise each: 3 g is more than six standard deviations.
        assert removed_mg == pytest.approx(sum(item.weight_mg for item in taken), abs=3_000)
        assert host.link.stats.timeouts == 0


def test_request_and_reply_take_wire_time_at_9600() -> None:
    baud = 9600
    with running_board(fast_config(baud)) as (_, runner), HostProbe(runner.tty_path, baud) as host:
        host.handshake()
        host.wait_event(BoardStarted)
        host.run_for(0.05)
        port = host.serial
        decoder = FrameDecoder()

        for seq in (50, 51, 52):
            request = encode_packet(Packet(ADDRESS_ANY, seq, ReadWeights()))
            sent_at = time.monotonic()
            port.write(request)
            frame, first_read, last_read = read_frame(port, decoder, timeout_s=2.0)
            reply = decode_packet(frame)
            reply_size = len(encode_packet(reply))

            assert isinstance(reply.message, WeightsReply)
            assert reply.seq == seq
            # The board cannot start its reply before the whole request crossed the wire,
            # and the last reply byte arrives after both frames' wire time.
            assert first_read - sent_at >= wire_time_s(len(request), baud)
            assert last_read - sent_at >= wire_time_s(len(request) + reply_size, baud)
            assert last_read - sent_at < wire_time_s(len(request) + reply_size, baud) + 0.5


def test_idle_board_uses_little_cpu() -> None:
    with running_board(fast_config()) as (_, runner), HostProbe(runner.tty_path, 115200) as host:
        host.handshake()
        host.wait_event(BoardStarted)
        host.run_for(0.05)

        cpu_before = time.process_time()
        time.sleep(0.5)
        cpu_used = time.process_time() - cpu_before

        # The test thread sleeps, so this is the I/O thread's CPU time: it should sleep too.
        assert cpu_used < 0.05


def test_retransmitted_unlock_over_pty_pulses_once() -> None:
    with (
        running_board(fast_config()) as (cabinet, runner),
        HostProbe(runner.tty_path, 115200) as host,
    ):
        host.handshake()
        host.wait_event(BoardStarted)
        host.run_for(0.05)
        port = host.serial
        decoder = FrameDecoder()
        request = encode_packet(Packet(ADDRESS_ANY, 77, Unlock(1, 1000, 0xAB)))

        port.write(request)
        first, _, _ = read_frame(port, decoder, timeout_s=2.0)
        port.write(request)
        second, _, _ = read_frame(port, decoder, timeout_s=2.0)

        assert first == second
        assert decode_packet(first).message == UnlockReply(1, 0xAB)
        assert cabinet.board.doors[1].pulse_count == 1
        diagnostics = host.call(Diagnostics(), DiagnosticsReply)
        assert diagnostics.repeated_requests == 1
        state = host.call(GetDoorState(1), DoorStateReply)
        assert state.doors[0].last_token == 0xAB


def test_partial_frame_dropped_after_idle_gap() -> None:
    with (
        running_board(fast_config()) as (cabinet, runner),
        HostProbe(runner.tty_path, 115200) as host,
    ):
        host.handshake()
        decoder_stats = cabinet.board.link.decoder.stats
        # A header that passes its check but announces 200 payload bytes that never come.
        header = encode_packet(Packet(ADDRESS_ANY, 3, Hello(1)))[:7]
        length = 200
        header = header[:6] + bytes((length,))
        header += bytes((crc8(header[2:7]),))

        host.serial.write(header)
        host.run_until(lambda: decoder_stats.idle_flushes == 1, "the board's idle flush")

        # Without the flush, the board would take this request as the missing payload.
        assert isinstance(host.handshake(), HelloReply)
        assert decoder_stats.frames >= 2


def test_host_reopens_tty() -> None:
    with running_board(fast_config()) as (cabinet, runner):
        with HostProbe(runner.tty_path, 115200) as host:
            host.handshake()
            host.wait_event(BoardStarted)
        wait_until(lambda: not runner.host_connected, "the board to notice the closed tty")
        # The board keeps running while no host has the tty open.
        Person(cabinet, "intruder").force_door(1)

        with HostProbe(runner.tty_path, 115200) as host:
            assert isinstance(host.handshake(), HelloReply)
            # The event could not reach anybody, so the board sends it again to the new host.
            forced = host.wait_event(DoorForced)
            assert forced.door == 1
        assert runner.stats.host_connections == 2
