"""Command-line entry point of the `kiosk-sim` program."""

import argparse
import sys
from collections.abc import Sequence

# Exit status of every command that is still a stub.
NOT_IMPLEMENTED_EXIT_CODE = 2
STUB_EPILOG = (
    "Not implemented yet: each command only prints a message and exits with status "
    f"{NOT_IMPLEMENTED_EXIT_CODE}."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk-sim",
        description="Simulate cabinet boards and students for demos and tests.",
        epilog=STUB_EPILOG,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "cabinet",
        help="run one virtual cabinet board",
        description="Run one virtual cabinet board that speaks the serial protocol.",
    )
    commands.add_parser(
        "demo",
        help="run the end-to-end demonstration",
        description=(
            "Run the end-to-end demonstration: virtual cabinets, kiosk agents and "
            "simulated students buying products."
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the chosen command and return the process exit status."""
    args = build_parser().parse_args(argv)
    print(
        f"kiosk-sim {args.command}: not implemented yet; the simulator is a stub in this version.",
        file=sys.stderr,
    )
    return NOT_IMPLEMENTED_EXIT_CODE
