"""Helpers shared by the tests of the deployment files in deploy/."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
MOSQUITTO_CONF = DEPLOY / "mosquitto" / "mosquitto.conf"


def certificate_commands(conf_text: str) -> list[str]:
    """Return the shell commands that mosquitto.conf gives for making the TLS certificates."""
    lines = conf_text.splitlines()
    start = next(i for i, line in enumerate(lines) if "Make the CA and the server" in line)
    commands: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("#   "):
            commands.append(line.removeprefix("#   "))
        elif commands:
            break
    return commands
