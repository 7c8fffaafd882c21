"""Command-line entry point of the `kiosk-sim` program."""

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from firmware_protocol.link import SUPPORTED_BAUDRATES
from simulator.cabinet import Cabinet
from simulator.clock import MonotonicClock
from simulator.config import CabinetConfig
from simulator.control import ControlServer
from simulator.demo import DemoError, add_demo_arguments, options_from_args, run_demo
from simulator.errors import ActionRejectedError
from simulator.faults import FaultSpec, parse_fault
from simulator.ground_truth import GroundTruthLog
from simulator.scenario import Scenario, ScenarioError, ScenarioRunner, load_scenario
from simulator.transport import BoardRunner

logger = logging.getLogger(__name__)

# Exit status when the command line or the scenario is invalid.
USAGE_EXIT_CODE = 2
CONTROL_SOCKET_NAME = "control.sock"

FAULT_HELP = """\
faults (--fault NAME=VALUE, repeatable; a scenario's [faults] table uses the same names):
  link faults, each a probability from 0 to 1:
    corrupt=P             flip one bit of each byte the board sends, with probability P
    corrupt-frame=P       corrupt one byte of each frame the board sends, with probability P
    corrupt-rx=P          flip one bit of each byte the board receives, with probability P
    drop=P                lose each reply and event frame the board sends, with probability P
    late=P                send each reply after the host's reply timeout, with probability P
    late-ms=MS            delay of a late reply in ms (default: 1.5 x the longest reply
                          timeout at the baud rate)
  hardware faults, each naming a 0-based door or shelf:
    jammed-lock=DOOR      the lock does not release when pulsed (LockFault JAMMED)
    latch-fail=DOOR       the lock does not latch when the door closes (LockFault NOT_LATCHED)
    scale-disconnected=SHELF   the load cell is unplugged (ScaleFault DISCONNECTED)
    scale-stuck=SHELF     the load cell's ADC output freezes (ScaleFault STUCK after 2 s)

output: the first line on stdout is a JSON object with the keys tty (the path to open
with a serial library), control (the control socket), pid, baud, address, doors,
shelves and serial_number. A line for humans follows. The board runs until SIGINT or
SIGTERM. Logs go to stderr.

control socket: a Unix domain socket that takes one JSON request per line, such as
{"command": "take", "shelf": 0, "product": "jinzhai-green-tea-250g", "count": 1}, and
returns one JSON response per line. The module simulator.control lists the commands.
"""


def _fault_argument(text: str) -> FaultSpec:
    try:
        return parse_fault(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_cabinet_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = commands.add_parser(
        "cabinet",
        help="run one virtual cabinet board",
        description=(
            "Run one virtual cabinet board that speaks the serial protocol on a "
            "pseudo-terminal, with a control socket to act as a person at the cabinet."
        ),
        epilog=FAULT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    parser.add_argument("--doors", type=int, help="number of doors (default 2, or the scenario's)")

    parser.add_argument(
        "--shelves", type=int, help="number of shelves (default 4, or the scenario's)"
    )

    parser.add_argument(
        "--baud",
        type=int,
        choices=SUPPORTED_BAUDRATES,
        help="baud rate that paces the board's bytes (default 115200, or the scenario's)",
    )

    parser.add_argument(
        "--seed",
        type=int,
        help="seed of every random choice of the simulation (default 1, or the scenario's)",
    )

    parser.add_argument(
        "--address",
        type=int,
        help="the board's RS-485 address, 1..247 (default 1, or the scenario's)",
    )

    parser.add_argument(
        "--settle-s",
        type=float,
        help="seconds a shelf swings after a hand leaves it (default 1.5, or the scenario's)",
    )

    parser.add_argument(
        "--scenario",
        type=Path,
        metavar="FILE",
        help="TOML scenario file with stock, faults, actions",
    )

    parser.add_argument(
        "--fault",
        type=_fault_argument,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="switch a fault on at start (repeatable, see the list below)",
    )

    parser.add_argument(
        "--ground-truth",
        type=Path,
        metavar="FILE",
        help="append every simulated action to FILE as JSON lines",
    )

    parser.add_argument(
        "--control-socket",
        type=Path,
        metavar="PATH",
        help="path of the control socket (default: control.sock in a new temporary directory)",
    )
    parser.add_argument(
        "--tty-link",
        type=Path,
        metavar="PATH",
        help=(
            "keep a symlink at PATH pointing to the board's tty, re-pointed when the line is "
            "unplugged and plugged in again, as udev's /dev/serial/by-id links are"
        ),
    )

    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="level of the log on stderr (default INFO)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk-sim",
        description="Simulate cabinet boards and students for demos and tests.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_cabinet_parser(commands)
    demo_parser = commands.add_parser(
        "demo",
        help="run the end-to-end demonstration",
        description=(
            "Run the end-to-end demonstration in a temporary directory: an MQTT broker, "
            "the fleet server on SQLite, virtual cabinets at Anhui universities with one "
            "kiosk agent each, and simulated students buying through the purchase API. "
            "It ends with a sales summary checked against the simulator's ground truth."
        ),
    )
    add_demo_arguments(demo_parser)
    return parser


def build_scenario(args: argparse.Namespace) -> Scenario:
    """Merge the scenario file, if any, with the command-line options, which take precedence."""
    scenario = load_scenario(args.scenario) if args.scenario else Scenario(CabinetConfig())
    config = scenario.config
    overrides = {
        name: getattr(args, name)
        for name in ("doors", "shelves", "baud", "seed", "address")
        if getattr(args, name) is not None
    }
    if overrides.keys() & {"doors", "shelves"} and config.shelf_specs:
        raise ScenarioError(
            "--doors and --shelves cannot change a scenario that lists its shelves; "
            "edit the scenario's [[shelves]] instead"
        )
    config = dataclasses.replace(config, **overrides)
    if args.settle_s is not None:
        config = dataclasses.replace(
            config, scale=dataclasses.replace(config.scale, settle_s=args.settle_s)
        )
    config.validate()
    return Scenario(config, (*scenario.faults, *args.fault), scenario.actions)


def _announce(runner: BoardRunner, socket_path: Path, config: CabinetConfig) -> None:
    announcement = {
        "tty": runner.tty_path,
        "tty_link": str(runner.tty_link) if runner.tty_link else None,
        "control": str(socket_path),
        "pid": os.getpid(),
        "baud": config.baud,
        "address": config.address,
        "doors": config.doors,
        "shelves": config.shelves,
        "serial_number": config.board_serial_number,
    }
    print(json.dumps(announcement), flush=True)
    print(
        f"Virtual cabinet board on {runner.tty_path} ({config.baud} baud, address "
        f"{config.address}); control socket {socket_path}. Stop with Ctrl+C.",
        flush=True,
    )


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """Yield an event that SIGINT or SIGTERM sets; restore the previous handlers on exit."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous_handlers = {
        signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)


def run_cabinet(args: argparse.Namespace) -> int:
    try:
        scenario = build_scenario(args)
    except (ScenarioError, ValueError) as error:
        print(f"kiosk-sim cabinet: {error}", file=sys.stderr)
        return USAGE_EXIT_CODE
    config = scenario.config

    cabinet = Cabinet(config, MonotonicClock(), ground_truth=GroundTruthLog(args.ground_truth))
    for spec in scenario.faults:
        try:
            cabinet.set_fault(spec, actor="command line")
        except ActionRejectedError as error:
            print(f"kiosk-sim cabinet: {error}", file=sys.stderr)
            return USAGE_EXIT_CODE

    socket_dir: str | None = None
    if args.control_socket is not None:
        socket_path = args.control_socket
    else:
        socket_dir = tempfile.mkdtemp(prefix="kiosk-sim-")
        socket_path = Path(socket_dir) / CONTROL_SOCKET_NAME
    runner = BoardRunner(cabinet, tty_link=args.tty_link)
    try:
        control = ControlServer(cabinet, socket_path, runner)
    except OSError as error:
        print(
            f"kiosk-sim cabinet: cannot create control socket {socket_path}: {error}",
            file=sys.stderr,
        )
        if socket_dir is not None:
            os.rmdir(socket_dir)
        return 1

    scenario_runner = ScenarioRunner(cabinet, scenario.actions, cabinet.board.start_time)
    # The handlers are installed before the announcement, because a parent may send
    # SIGTERM as soon as it has read the tty path.
    with _stop_on_signals() as stop:
        try:
            runner.start()
            control.start()
            scenario_runner.start()
            _announce(runner, socket_path, config)
            stop.wait()
        finally:
            scenario_runner.stop()
            control.stop()
            runner.stop()
            if socket_dir is not None:
                try:
                    os.rmdir(socket_dir)
                except OSError as error:
                    logger.warning("cannot remove %s: %s", socket_dir, error)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command; return the process exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "cabinet":
        logging.basicConfig(
            level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return run_cabinet(args)
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = options_from_args(args)
    except ValueError as error:
        print(f"kiosk-sim demo: {error}", file=sys.stderr)
        return USAGE_EXIT_CODE
    try:
        return run_demo(options)
    except KeyboardInterrupt:
        # run_demo has stopped every process it started before this is reached.
        print("kiosk-sim demo: interrupted", file=sys.stderr)
        return 130
    except DemoError as error:
        print(f"kiosk-sim demo: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
