"""The command-line stubs parse their arguments and report that they are not implemented."""

from collections.abc import Callable, Sequence

import pytest

from fleet_server import cli as fleet_server_cli
from kiosk_agent import cli as kiosk_agent_cli
from simulator import cli as simulator_cli

CliMain = Callable[[Sequence[str] | None], int]

STUB_CASES = [
    pytest.param(kiosk_agent_cli.main, ["--config", "agent.toml"], id="kiosk-agent"),
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
    "main",
    [kiosk_agent_cli.main, fleet_server_cli.main, simulator_cli.main],
    ids=["kiosk-agent", "fleet-server", "kiosk-sim"],
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
