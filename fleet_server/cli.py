"""Command-line entry point of the `fleet-server` program."""

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
        prog="fleet-server",
        description="Manage the fleet server that collects data from all cabinets.",
        epilog=STUB_EPILOG,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "serve",
        help="run the HTTP API server",
        description="Run the HTTP API server for cabinets and operators.",
    )
    commands.add_parser(
        "ingest",
        help="consume cabinet events from the MQTT broker into the database",
        description="Consume cabinet events from the MQTT broker and store them in the database.",
    )
    commands.add_parser(
        "migrate",
        help="create or upgrade the database schema",
        description="Create or upgrade the PostgreSQL database schema.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the chosen command and return the process exit status."""
    args = build_parser().parse_args(argv)
    print(
        f"fleet-server {args.command}: not implemented yet; the fleet server is a stub "
        "in this version.",
        file=sys.stderr,
    )
    return NOT_IMPLEMENTED_EXIT_CODE
