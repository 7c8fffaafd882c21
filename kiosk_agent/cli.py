"""Command-line entry point of the `kiosk-agent` program."""

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from kiosk_agent.config import AgentSettings, ConfigError, load_settings

logger = logging.getLogger("kiosk_agent")

CONFIG_ERROR_EXIT_CODE = 2
STARTUP_ERROR_EXIT_CODE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk-agent",
        description=(
            "Run the agent on one smart cabinet: it drives the cabinet board over the serial "
            "protocol, runs purchase sessions and reports sales and events to the fleet server "
            "over MQTT."
        ),
        epilog=(
            "Settings come from the TOML file and from ZHIGUI_AGENT_* environment variables, "
            "which override the file."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        type=Path,
        help="path of the agent's TOML configuration file",
    )
    return parser


async def _run(agent_settings: AgentSettings) -> None:
    from kiosk_agent.agent import KioskAgent

    agent = KioskAgent(agent_settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, agent.stop)
    await agent.run()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the agent until SIGINT or SIGTERM, return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"kiosk-agent: {exc}", file=sys.stderr)
        return CONFIG_ERROR_EXIT_CODE

    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_run(settings))
    except OSError as exc:
        # The data directory cannot be created, or the screen's port is taken.
        logger.error("cannot start the agent of cabinet %s: %s", settings.kiosk_id, exc)
        print(f"kiosk-agent: cannot start: {exc}", file=sys.stderr)
        return STARTUP_ERROR_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
