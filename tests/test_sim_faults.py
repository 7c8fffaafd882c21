"""Every fault switch of ``kiosk-sim cabinet``, from the command line, a scenario file and
the control socket, with its effect on the wire as the host receives it.

Each case starts the real command as a child process and talks to its tty with
pyserial through ``HostProbe`` (pyserial plus firmware_protocol's HostLink).
"""

import time
from pathlib import Path

import pytest
import serial

from firmware_protocol.codec import Packet, decode_packet, encode_packet
from firmware_protocol.decoder import FrameDecoder
from firmware_protocol.frame import ADDRESS_ANY
from firmware_protocol.link import DEFAULT_RETRIES, LinkTiming, ReplyReceived, TimedOut
from firmware_protocol.messages import (
    BoardStarted,
    Diagnostics,
    DiagnosticsReply,
    DoorStateReply,
    GetDoorState,
    Hello,
    LockFault,
    LockFaultCode,
    LockState,
    ReadWeights,
    Reply,
    ScaleFault,
    ScaleFaultCode,
    ShelfStatus,
    Unlock,
    UnlockReply,
    WeightsReply,
)
from simulator.control import ControlClient
from simulator.probe import HostProbe
from simulator.process import CabinetProcess

BAUD = 115200
COMMON_ARGS = ["--seed", "5", "--settle-s", "0.2", "--log-level", "WARNING"]
SOURCES = ["command line", "scenario"]


def cabinet_process(source: str, faults: list[str], tmp_path: Path) -> CabinetProcess:
    """Return a cabinet process with ``faults`` switched on from ``source``."""
    if source == "command line":
        return CabinetProcess([*COMMON_ARGS, *(f"--fault={fault}" for fault in faults)])
    lines = ["[faults]"]
    for fault in faults:
        name, _, value = fault.partition("=")
        lines.append(f"{name} = {value}")
    scenario = tmp_path / "faults.toml"
    scenario.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return CabinetProcess([*COMMON_ARGS, "--scenario", str(scenario)])


def read_reply(port: serial.Serial, timeout_s: float) -> tuple[Reply, float]:
    """Read frames until a reply arrives, skipping events; returns it and its arrival time."""
    decoder = FrameDecoder()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        data = port.read(port.in_waiting or 1)
        for frame in decoder.feed(data):
            message = decode_packet(frame).message
            if isinstance(message, Reply):
                return message, time.monotonic()
    raise AssertionError(f"no reply within {timeout_s} s")


# Link faults.


@pytest.mark.parametrize("source", SOURCES)
def test_corrupt_raises_crc_errors(source: str, tmp_path: Path) -> None:
    with (
        cabinet_process(source, ["corrupt=0.02"], tmp_path) as cabinet,
        HostProbe(cabinet.tty, BAUD) as host,
    ):
        outcomes = [host.request(ReadWeights()) for _ in range(20)]

        stats = host.link.decoder.stats
        assert stats.crc_errors + stats.header_errors > 0
        # Retransmission repairs most of the damage.
        assert sum(isinstance(outcome, ReplyReceived) for outcome in outcomes) >= 10
        assert host.link.stats.retransmits > 0


@pytest.mark.parametrize("source", SOURCES)
def test_corrupt_frame_spoils_every_frame(source: str, tmp_path: Path) -> None:
    with (
        cabinet_process(source, ["corrupt-frame=1"], tmp_path) as cabinet,
        HostProbe(cabinet.tty, BAUD) as host,
    ):
        outcome = host.request(Hello(1))

        assert isinstance(outcome, TimedOut)
        assert host.link.decoder.stats.frames == 0
        stats = host.link.decoder.stats
        assert stats.crc_errors + stats.header_errors + stats.bytes_discarded > 0


@pytest.mark.parametrize("source", SOURCES)
def test_corrupt_rx_counted_by_board(source: str, tmp_path: Path) -> None:
    with (
        cabinet_process(source, ["corrupt-rx=0.05"], tmp_path) as cabinet,
        HostProbe(cabinet.tty, BAUD) as host,
        ControlClient(cabinet.control) as control,
    ):
        for _ in range(20):
            host.request(ReadWeights())

        control.request("fault", fault="corrupt-rx=0")
        diagnostics = host.call(Diagnostics(), DiagnosticsReply)

        # A corrupted SOF byte only hides a frame; any other byte fails a check.
        assert diagnostics.rx_crc_errors + diagnostics.rx_header_errors > 0
        assert host.link.stats.retransmits > 0
        stats = control.request("status")["link_fault_stats"]
        assert stats["rx_bytes_corrupted"] > 0


@pytest.mark.parametrize("source", SOURCES)
def test_drop_loses_replies_and_events(source: str, tmp_path: Path) -> None:
    with (
        cabinet_process(source, ["drop=1"], tmp_path) as cabinet,
        HostProbe(cabinet.tty, BAUD) as host,
    ):
        outcome = host.request(Hello(1))

        assert isinstance(outcome, TimedOut)
        assert outcome.attempts == DEFAULT_RETRIES + 1
        assert host.link.decoder.stats.frames == 0
        assert not host.events


@pytest.mark.parametrize("source", SOURCES)
def test_late_reply_arrives_after_timeout(source: str, tmp_path: Path) -> None:
    with (
        cabinet_process(source, ["late=1"], tmp_path) as cabinet,
        serial.Serial(cabinet.tty, BAUD, timeout=0.01) as port,
    ):
        request = encode_packet(Packet(ADDRESS_ANY, 9, ReadWeights()))
        sent_at = time.monotonic()
        port.write(request)
        reply, arrived_at = read_reply(port, timeout_s=5.0)

        assert isinstance(reply, WeightsReply)
        assert arrived_at - sent_at > LinkTiming(BAUD).reply_timeout_s(len(request))


@pytest.mark.parametrize("source", SOURCES)
def test_late_ms_sets_delay(source: str, tmp_path: Path) -> None:
    with (
        cabinet_process(source, ["late=1", "late-ms=300"], tmp_path) as cabinet,
        serial.Serial(cabinet.tty, BAUD, timeout=0.01) as port,
    ):
        request = encode_packet(Packet(ADDRESS_ANY, 9, ReadWeights()))
        sent_at = time.monotonic()
        port.write(request)
        _, arrived_at = read_reply(port, timeout_s=5.0)

        assert arrived_at - sent_at >= 0.3


# Hardware faults.


@pytest.mark.parametrize("source", SOURCES)
def test_jammed_lock_reports_jam(source: str, tmp_path: Path) -> None:
    with (
        cabinet_process(source, ["jammed-lock=0"], tmp_path) as cabinet,
        HostProbe(cabinet.tty, BAUD) as host,
        ControlClient(cabinet.control) as control,
    ):
        assert host.call(Unlock(0, 500, 61), UnlockReply) == UnlockReply(0, 61)

        fault = host.wait_event(LockFault)
        assert fault.door == 0
        assert fault.fault is LockFaultCode.JAMMED
        state = host.call(GetDoorState(0), DoorStateReply)
        assert state.doors[0].lock is LockState.FAULT
        with pytest.raises(Exception, match="jammed"):
            control.request("open_door", door=0)


@pytest.mark.parametrize("source", SOURCES)
def test_latch_fail_reports_not_latched(source: str, tmp_path: Path) -> None:
    with (
        cabinet_process(source, ["latch-fail=1"], tmp_path) as cabinet,
        HostProbe(cabinet.tty, BAUD) as host,
        ControlClient(cabinet.control) as control,
    ):
        host.call(Unlock(1, 100, 62), UnlockReply)
        control.request("open_door", door=1)
        control.request("close_door", door=1)

        fault = host.wait_event(LockFault)
        assert fault.door == 1
        assert fault.fault is LockFaultCode.NOT_LATCHED
        state = host.call(GetDoorState(1), DoorStateReply)
        assert state.doors[0].lock is LockState.FAULT


@pytest.mark.parametrize("source", SOURCES)
def test_scale_disconnected_reports_fault(source: str, tmp_path: Path) -> None:
    with (
        cabinet_process(source, ["scale-disconnected=2"], tmp_path) as cabinet,
        HostProbe(cabinet.tty, BAUD) as host,
    ):
        started = host.wait_event(BoardStarted)
        fault = host.wait_event(ScaleFault)
        weights = host.call(ReadWeights(), WeightsReply)

        assert started.uptime_ms <= fault.uptime_ms
        assert fault.shelf == 2
        assert fault.fault is ScaleFaultCode.DISCONNECTED
        assert weights.shelves[2].status == ShelfStatus.FAULT
        assert weights.shelves[1].status != ShelfStatus.FAULT


@pytest.mark.parametrize("source", SOURCES)
def test_scale_stuck_reports_fault(source: str, tmp_path: Path) -> None:
    with (
        cabinet_process(source, ["scale-stuck=3"], tmp_path) as cabinet,
        HostProbe(cabinet.tty, BAUD) as host,
    ):
        # The firmware needs 2 s of identical samples to call the channel stuck.
        fault = host.wait_event(ScaleFault, timeout_s=5.0)
        weights = host.call(ReadWeights(), WeightsReply)

        assert fault.shelf == 3
        assert fault.fault is ScaleFaultCode.STUCK
        assert fault.uptime_ms >= 2000
        assert weights.shelves[3].status == ShelfStatus.FAULT


# Switching at run time.


def test_faults_switched_through_control_socket() -> None:
    with (
        CabinetProcess(COMMON_ARGS) as cabinet,
        HostProbe(cabinet.tty, BAUD) as host,
        ControlClient(cabinet.control) as control,
    ):
        host.handshake()

        control.request("fault", fault="drop=1")
        assert isinstance(host.request(ReadWeights()), TimedOut)
        control.request("fault", fault="drop=0")
        assert isinstance(host.request(ReadWeights()), ReplyReceived)

        control.request("fault", fault="jammed-lock=1")
        host.call(Unlock(1, 300, 5), UnlockReply)
        assert host.wait_event(LockFault).fault is LockFaultCode.JAMMED
        control.request("clear_fault", fault="jammed-lock=1")
        state = host.call(GetDoorState(1), DoorStateReply)
        assert state.doors[0].lock is LockState.LOCKED

        records = control.request("ground_truth")["records"]
        switches = [(record["action"], record["detail"]) for record in records]
        assert ("fault_on", "drop=1.0") in switches
        assert ("fault_off", "jammed-lock=1") in switches


def test_scenario_action_switches_fault(tmp_path: Path) -> None:
    scenario = tmp_path / "timed.toml"
    scenario.write_text(
        '[[actions]]\nat_s = 0.3\naction = "fault"\nfault = "scale-disconnected=0"\n',
        encoding="utf-8",
    )
    with (
        CabinetProcess([*COMMON_ARGS, "--scenario", str(scenario)]) as cabinet,
        HostProbe(cabinet.tty, BAUD) as host,
    ):
        fault = host.wait_event(ScaleFault)

        assert fault.shelf == 0
        assert fault.fault is ScaleFaultCode.DISCONNECTED
        assert fault.uptime_ms >= 300
