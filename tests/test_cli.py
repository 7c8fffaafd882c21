"""The command lines: help, usage errors, configuration errors and the remaining stubs."""

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from fleet_server import cli as fleet_server_cli
from kiosk_agent import cli as kiosk_agent_cli
from simulator import cli as simulator_cli

CliMain = Callable[[Sequence[str] | None], int]

STUB_CASES = [
    pytest.param(fleet_server_cli.main, ["ingest"], id="fleet-server ingest"),
    pytest.param(simulator_cli.main, ["demo"], id="kiosk-sim demo"),
]


@pytest.mark.parametrize(("main", "argv"), STUB_CASES)
def test_stub_exits_2_with_message(
    main: CliMain, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "not implemented yet" in captured.err


@pytest.mark.parametrize(
    "main", [fleet_server_cli.main, simulator_cli.main], ids=["fleet-server", "kiosk-sim"]
)
def test_help_describes_program(main: CliMain, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: ")
    assert "Not implemented yet" in help_text


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
