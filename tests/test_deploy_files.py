"""Checks of the deployment files that need no running service: units, settings, compose, guides."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_helpers import DEPLOY, MOSQUITTO_CONF, REPO, certificate_commands
from fleet_server.core.config import SettingsError, load_settings

SYSTEMD_DIR = DEPLOY / "systemd"
# Programs that the units run, made as empty scripts in the throwaway root, because
# `systemd-analyze verify` rejects a unit whose ExecStart= program does not exist.
UNIT_PROGRAMS = (
    "opt/zhigui/venv/bin/fleet-server",
    "opt/zhigui/venv/bin/kiosk-agent",
    "usr/sbin/mosquitto",
    "bin/mkdir",
    "bin/chown",
    "bin/kill",
)
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    """Return a file system root with systemd's own units and the deploy/systemd files.

    The units are checked inside this root, so the check neither needs nor changes the
    units installed on this machine.
    """
    if shutil.which("systemd-analyze") is None or not SYSTEM_UNITS.is_dir():
        pytest.skip("systemd-analyze not installed: apt-get install systemd")
    shutil.copytree(SYSTEM_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    for program in UNIT_PROGRAMS:
        path = tmp_path / program
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    units = tmp_path / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in SYSTEMD_DIR.glob("*.service"):
        shutil.copy(unit, units / unit.name)
    drop_ins = units / "mosquitto.service.d"
    shutil.copytree(SYSTEMD_DIR / "mosquitto.service.d", drop_ins)
    # The start and reload lines of Debian's mosquitto.service, which the drop-in extends.
    (units / "mosquitto.service").write_text(
        "[Unit]\nDescription=Mosquitto MQTT Broker\n\n[Service]\nType=notify\n"
        "ExecStart=/usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf\n"
        "ExecReload=/bin/kill -HUP $MAINPID\n"
    )
    return tmp_path


def test_units_pass_systemd_verify(unit_root: Path) -> None:
    units = [
        "zhigui-server.service",
        "zhigui-ingest@1.service",
        "zhigui-agent.service",
        "mosquitto.service",
    ]

    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=false", f"--root={unit_root}", *units],
        capture_output=True,
        text=True,
        check=False,
    )

    # verify exits 0 for unknown keys and unparsable values, and only prints them.
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == ""


@pytest.mark.parametrize("unit", ["zhigui-server.service", "zhigui-ingest@.service"])
def test_server_units_read_settings_file(unit: str) -> None:
    lines = (SYSTEMD_DIR / unit).read_text().splitlines()

    assert "EnvironmentFile=/etc/zhigui/server.env" in lines
    assert "User=zhigui" in lines
    assert "Restart=on-failure" in lines
    assert "NoNewPrivileges=true" in lines
    assert "ProtectSystem=strict" in lines


def test_ingest_unit_runs_without_monitoring() -> None:
    lines = (SYSTEMD_DIR / "zhigui-ingest@.service").read_text().splitlines()

    assert "ExecStart=/opt/zhigui/venv/bin/fleet-server ingest" in lines
    assert "Environment=ZHIGUI_INGEST_MONITORING=false" in lines


def test_env_example_rejected_unchanged() -> None:
    with pytest.raises(SettingsError, match="ZHIGUI_SECRET_KEY"):
        load_settings(DEPLOY / "server.env.example")


@pytest.mark.parametrize("guide", ["production.md", "production.zh-CN.md"])
def test_guide_repeats_certificate_commands(guide: str) -> None:
    commands = certificate_commands(MOSQUITTO_CONF.read_text(encoding="utf-8"))
    text = (REPO / "docs" / guide).read_text(encoding="utf-8")

    assert len(commands) == 6
    assert [command for command in commands if command not in text] == []


# --- Compose stack --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """Return deploy/compose.yaml as YAML data, with its anchors and merge keys resolved."""
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return data


def test_compose_config_valid() -> None:
    program = shutil.which("docker-compose")
    if program is None:
        pytest.skip("docker-compose not installed: apt-get install docker-compose")

    result = subprocess.run(
        [
            program,
            "--env-file",
            str(DEPLOY / "compose.env.example"),
            "--file",
            str(DEPLOY / "compose.yaml"),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def test_compose_workers_share_ingest(compose: dict[str, Any]) -> None:
    services = compose["services"]
    workers = [services["ingest-1"], services["ingest-2"]]

    assert set(services) == {
        "postgres",
        "migrate",
        "broker-config",
        "mosquitto",
        "api",
        "ingest-1",
        "ingest-2",
    }
    for worker in workers:
        environment = worker["environment"]
        assert worker["command"] == ["ingest"]
        assert environment["ZHIGUI_INGEST_SHARED_SUBSCRIPTION"] == "true"
        assert environment["ZHIGUI_INGEST_GROUP"] == "fleet-ingest"
        assert environment["ZHIGUI_INGEST_MONITORING"] == "false"
        assert environment["ZHIGUI_MQTT_HOST"] == "mosquitto"
    assert services["api"]["environment"]["ZHIGUI_INGEST_GROUP"] == "fleet-ingest"


def test_compose_migrates_before_serving(compose: dict[str, Any]) -> None:
    services = compose["services"]
    done = {"condition": "service_completed_successfully"}

    assert services["migrate"]["command"] == ["migrate"]
    assert services["api"]["command"][0] == "serve"
    assert services["api"]["depends_on"]["migrate"] == done
    assert services["ingest-1"]["depends_on"]["migrate"] == done
    assert services["broker-config"]["depends_on"]["migrate"] == done
    assert services["mosquitto"]["depends_on"]["broker-config"] == done


def test_compose_broker_uses_deploy_conf(compose: dict[str, Any], tmp_path: Path) -> None:
    mosquitto = compose["services"]["mosquitto"]
    [script] = mosquitto["command"]
    # Run the start-up script on the shipped file, with cat in place of the broker. Compose
    # turns "$$" into "$" before it passes the script to the container's shell.
    script = (
        script.replace("$$", "$")
        .replace("/etc/zhigui/mosquitto.conf", str(DEPLOY / "mosquitto" / "mosquitto.conf"))
        .replace("/tmp/mosquitto.conf", str(tmp_path / "mosquitto.conf"))
        .replace("exec /usr/sbin/mosquitto -c", "exec cat")
    )

    result = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, check=False)

    assert "./mosquitto/mosquitto.conf:/etc/zhigui/mosquitto.conf:ro" in mosquitto["volumes"]
    assert result.returncode == 0, result.stderr
    listeners = [line for line in result.stdout.splitlines() if line.startswith("listener ")]
    assert listeners == ["listener 1883", "listener 8883"]
