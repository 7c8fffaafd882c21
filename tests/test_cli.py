"""The command lines: help, usage errors and configuration errors."""

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from fleet_server import cli as fleet_server_cli
from kiosk_agent import cli as kiosk_agent_cli
from simulator import cli as simulator_cli

CliMain = Callable[[Sequence[str] | None], int]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["demo", "--cabinets", "0"], id="no cabinets"),
        pytest.param(["demo", "--students", "0"], id="no students"),
        pytest.param(["demo", "--days", "0"], id="no days"),
        pytest.param(["demo", "--purchases", "-1"], id="negative purchases"),
    ],
)
def test_demo_rejects_invalid_counts(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert simulator_cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "must be at least" in captured.err


@pytest.mark.parametrize("main", [simulator_cli.main], ids=["kiosk-sim"])
def test_help_describes_program(main: CliMain, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: ")
    assert "Simulate cabinet boards and students" in help_text


@pytest.mark.parametrize(
    ("main", "subcommands"),
    [
        (fleet_server_cli.main, ["serve", "ingest", "migrate", "seed", "create-user"]),
        (simulator_cli.main, ["cabinet", "demo"]),
    ],
    ids=["fleet-server", "kiosk-sim"],
)
def test_help_lists_subcommands(
    main: CliMain, subcommands: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for subcommand in subcommands:
        assert subcommand in help_text


@pytest.mark.parametrize(
    "main", [fleet_server_cli.main, simulator_cli.main], ids=["fleet-server", "kiosk-sim"]
)
def test_missing_subcommand_is_usage_error(
    main: CliMain, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_agent_help_names_config_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        kiosk_agent_cli.main(["--help"])

    help_text = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "--config PATH" in help_text
    assert "ZHIGUI_AGENT_" in help_text


def test_agent_missing_config_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "agent.toml"

    status = kiosk_agent_cli.main(["--config", str(missing)])

    assert status == 2
    assert f"configuration file {missing} not found" in capsys.readouterr().err


def test_agent_invalid_config_lists_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ZHIGUI_AGENT_KIOSK_ID", "ZHIGUI_AGENT_HMAC_KEY", "ZHIGUI_AGENT_SERIAL_PORT"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "agent.toml"
    config.write_text('kiosk_id = "bad/id"\n', encoding="utf-8")

    status = kiosk_agent_cli.main(["--config", str(config)])

    error = capsys.readouterr().err
    assert status == 2
    assert "kiosk_id" in error
    assert "hmac_key" in error
    assert "serial_port" in error


def test_agent_unwritable_data_dir_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ZHIGUI_AGENT_KIOSK_ID", "ZHIGUI_AGENT_HMAC_KEY", "ZHIGUI_AGENT_SERIAL_PORT"):
        monkeypatch.delenv(name, raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    config = tmp_path / "agent.toml"
    config.write_text(
        'kiosk_id = "AH-10357-0001"\n'
        'hmac_key = "9f2c4e71b06d8a35c2f19e47d05b3a8c61e2f7049d3b5a86c1e0f92d47b8a613"\n'
        'serial_port = "/dev/null"\n'
        "development = true\n"
        f'data_dir = "{blocker / "data"}"\n',
        encoding="utf-8",
    )

    status = kiosk_agent_cli.main(["--config", str(config)])

    assert status == 1
    assert "cannot start" in capsys.readouterr().err
