"""Command-line entry point of the `kiosk-agent` program."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

# Exit status of every command that is still a stub.
NOT_IMPLEMENTED_EXIT_CODE = 2
STUB_EPILOG = (
    "Not implemented yet: the agent only prints a message and exits with status "
    f"{NOT_IMPLEMENTED_EXIT_CODE}."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk-agent",
        description=(
            "Run the agent on one smart cabinet: it talks to the cabinet board over the "
            "serial protocol and reports door, weight and sale events to the fleet server."
        ),
        epilog=STUB_EPILOG,
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        type=Path,
        help="path of the agent's configuration file",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the agent and return the process exit status."""
    build_parser().parse_args(argv)
    print(
        "kiosk-agent: not implemented yet; the agent is a stub in this version.",
        file=sys.stderr,
    )
    return NOT_IMPLEMENTED_EXIT_CODE
