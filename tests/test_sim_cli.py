"""The ``kiosk-sim cabinet`` command line: options, help, output and shutdown."""

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_protocol.messages import HelloReply, Unlock, UnlockReply
from simulator import cli
from simulator.faults import FAULT_NAMES
from simulator.probe import HostProbe
from simulator.process import CabinetProcess

STARTUP_TIMEOUT_S = 15.0


def test_cabinet_help_lists_every_fault(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["cabinet", "--help"])

    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for name in FAULT_NAMES:
        assert f"{name}=" in help_text
    assert "--fault NAME=VALUE" in help_text
    assert "JSON object" in help_text


def test_unknown_fault_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["cabinet", "--fault", "melt=1"])

    assert exit_info.value.code == 2
    assert "unknown fault 'melt'" in capsys.readouterr().err


def test_fault_on_missing_door_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["cabinet", "--doors", "2", "--fault", "jammed-lock=9"])

    assert status == 2
    assert "door 9 does not exist" in capsys.readouterr().err


def test_invalid_scenario_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text("[cabinet]\ndoorz = 3\n", encoding="utf-8")

    status = cli.main(["cabinet", "--scenario", str(scenario)])

    assert status == 2
    error = capsys.readouterr().err
    assert "unknown keys ['doorz']" in error
    assert str(scenario) in error


def test_doors_conflict_with_scenario_shelves(capsys: pytest.CaptureFixture[str]) -> None:
    scenario = Path(cli.__file__).parent / "scenarios" / "anhui_campus.toml"

    status = cli.main(["cabinet", "--scenario", str(scenario), "--shelves", "6"])

    assert status == 2
    assert "edit the scenario's [[shelves]]" in capsys.readouterr().err


def test_demo_help_lists_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])

    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--exit-when-done", "--cabinets", "--students", "--days", "--broker"):
        assert option in help_text


def test_options_reach_board() -> None:
    args = ["--doors", "3", "--shelves", "5", "--baud", "57600", "--address", "7", "--seed", "4"]
    with CabinetProcess([*args, "--log-level", "WARNING"]) as cabinet:
        info = cabinet.info
        # A host that filters on address 7 hears the board.
        with HostProbe(cabinet.tty, 57600, address=7) as host:
            hello = host.handshake()
            unlock = host.call(Unlock(2, 200, 1), UnlockReply)

    assert info["baud"] == 57600
    assert info["address"] == 7
    assert info["doors"] == 3
    assert info["shelves"] == 5
    assert isinstance(hello, HelloReply)
    assert hello.doors == 3
    assert hello.shelves == 5
    assert hello.serial_number == info["serial_number"]
    assert unlock.door == 2


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_announces_tty_and_stops_on_signal(signal_number: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator.cli", "cabinet", "--log-level", "WARNING"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        human_line = process.stdout.readline()

        assert stat.S_ISCHR(os.stat(info["tty"]).st_mode)
        assert stat.S_ISSOCK(os.stat(info["control"]).st_mode)
        assert info["pid"] == process.pid
        assert info["tty"] in human_line

        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=STARTUP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, stderr
    # The control socket and its temporary directory are removed on exit.
    assert not os.path.exists(info["control"])
    assert not os.path.exists(os.path.dirname(info["control"]))
