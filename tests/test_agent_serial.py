"""The agent's serial driver against a virtual board on a real pseudo-terminal."""

import asyncio
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from firmware_protocol.link import Aborted, ReplyReceived
from firmware_protocol.messages import (
    BoardStarted,
    DoorClosed,
    DoorOpened,
    Event,
    ReadWeights,
    Unlock,
    UnlockReply,
    WeightsReply,
)
from kiosk_agent import serial_driver
from kiosk_agent.serial_driver import LinkStatus, SerialDriver
from simulator.control import ControlClient
from simulator.process import CabinetProcess

WAIT_S = 15.0
T = TypeVar("T")


def _point(link: Path, target: str) -> None:
    """Point the symlink ``link`` at ``target`` atomically, as udev does for a USB adapter."""
    staging = link.with_suffix(".new")
    staging.unlink(missing_ok=True)
    staging.symlink_to(target)
    os.replace(staging, link)


async def _wait(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, WAIT_S)


class _Recorder:
    def __init__(self) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.statuses: asyncio.Queue[LinkStatus] = asyncio.Queue()

    async def next_status(self, up: bool) -> LinkStatus:
        while True:
            status = await _wait(self.statuses.get())
            if status.up == up:
                return status

    async def next_event(self, kind: type[Event]) -> Event:
        while True:
            event = await _wait(self.events.get())
            if isinstance(event, kind):
                return event


def _driver(port: Path, baud: int, recorder: _Recorder) -> SerialDriver:
    return SerialDriver(
        str(port),
        baudrate=baud,
        loop=asyncio.get_running_loop(),
        on_event=lambda seq, event: recorder.events.put_nowait(event),
        on_status=recorder.statuses.put_nowait,
    )


def test_driver_unlocks_and_receives_door_events(tmp_path: Path) -> None:
    async def scenario() -> None:
        with CabinetProcess(["--seed", "3"]) as cabinet:
            port = tmp_path / "ttyCABINET"
            _point(port, cabinet.tty)
            recorder = _Recorder()
            driver = _driver(port, cabinet.baud, recorder)
            driver.start()
            try:
                status = await recorder.next_status(up=True)
                assert status.board is not None
                assert status.board.shelves == 4

                weights = await _wait(driver.request(ReadWeights()))
                assert isinstance(weights, ReplyReceived)
                assert isinstance(weights.reply, WeightsReply)
                assert len(weights.reply.shelves) == 4

                unlocked = await _wait(driver.request(Unlock(0, 500, 4242)))
                assert isinstance(unlocked, ReplyReceived)
                assert unlocked.reply == UnlockReply(0, 4242)

                with ControlClient(cabinet.control) as control:
                    control.request("open_door", door=0)
                    opened = await recorder.next_event(DoorOpened)
                    assert isinstance(opened, DoorOpened)
                    assert opened.token == 4242
                    control.request("close_door", door=0)
                    closed = await recorder.next_event(DoorClosed)
                    assert isinstance(closed, DoorClosed)
                    assert closed.door == 0
            finally:
                driver.stop()

    asyncio.run(scenario())


def test_driver_survives_port_vanishing(tmp_path: Path) -> None:
    async def scenario() -> None:
        port = tmp_path / "ttyCABINET"
        recorder = _Recorder()
        first = CabinetProcess(["--seed", "4"])
        first.start()
        _point(port, first.tty)
        driver = _driver(port, first.baud, recorder)
        driver.start()
        try:
            await recorder.next_status(up=True)

            first.stop()
            down = await recorder.next_status(up=False)
            assert down.error
            outcome = await _wait(driver.request(ReadWeights()))
            assert isinstance(outcome, Aborted)

            with CabinetProcess(["--seed", "5"]) as second:
                _point(port, second.tty)
                await recorder.next_status(up=True)
                weights = await _wait(driver.request(ReadWeights()))
                assert isinstance(weights, ReplyReceived)
                assert driver.reconnects >= 1
        finally:
            driver.stop()
            first.stop()

    asyncio.run(scenario())


def test_request_interrupts_blocking_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With reads this long, a request that waited for the read to time out would
    # outlast every wait of this test.
    monkeypatch.setattr(serial_driver, "READ_SLICE_S", WAIT_S * 10)

    async def scenario() -> None:
        with CabinetProcess(["--seed", "6"]) as cabinet:
            recorder = _Recorder()
            driver = _driver(Path(cabinet.tty), cabinet.baud, recorder)
            driver.start()
            try:
                await recorder.next_status(up=True)
                await recorder.next_event(BoardStarted)

                for _ in range(3):
                    # Let the worker go back into a read that only the request can end.
                    await asyncio.sleep(0.2)
                    weights = await _wait(driver.request(ReadWeights()))
                    assert isinstance(weights, ReplyReceived)
            finally:
                driver.stop()

    asyncio.run(scenario())
