"""Provisioning: credentials, the agent's config file, the sticker, the CLI and the migration."""

import stat
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import qrcode
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from qrcode.constants import ERROR_CORRECT_M
from sqlalchemy.orm import Session, sessionmaker

from fleet_server import cli
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import create_db_engine, session_scope
from fleet_server.core.migrate import alembic_config
from fleet_server.models import Base
from fleet_server.services.audit import list_audit_entries
from fleet_server.services.broker_auth import verify_mosquitto_password
from fleet_server.services.stickers import QR_SIZE_MM
from kiosk_agent.config import load_settings
from operations_helpers import cabinet
from server_helpers import World

pytest_plugins = ["server_fixtures"]

SVG = "{http://www.w3.org/2000/svg}"
OPERATIONS_TABLES = {
    "planograms",
    "planogram_shelves",
    "planogram_lines",
    "cabinet_states",
    "cabinet_stock",
    "alert_conditions",
    "alerts",
}
CABINET_COLUMNS = {"broker_username", "broker_password_hash", "hmac_key", "credentials_issued_at"}
# Columns that later revisions add to the tables of 0002_operations.
LATER_COLUMNS = {("planogram_shelves", "door")}


def provision(client: TestClient, world: World, role: str = "operator_a") -> dict[str, str]:
    response = client.post(
        f"/api/v1/cabinets/{world.a.kiosk_id}/provision", headers=world.headers[role]
    )
    assert response.status_code == 200, response.json()
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, str] = response.json()
    return body


def test_agent_config_loads_in_agent(
    client: TestClient,
    world: World,
    settings: ServerSettings,
    seeded: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    bundle = provision(client, world)
    config_path = tmp_path / "agent.toml"
    config_path.write_text(bundle["agent_config_toml"], encoding="utf-8")

    agent = load_settings(config_path)

    assert agent.kiosk_id == world.a.kiosk_id
    assert agent.hmac_key_bytes == bytes.fromhex(bundle["hmac_key"])
    assert len(agent.hmac_key_bytes) == 32
    assert agent.mqtt_username == world.a.kiosk_id
    assert agent.broker_password is not None
    assert agent.broker_password.get_secret_value() == bundle["broker_password"]
    assert agent.broker_host == settings.mqtt_host
    assert agent.broker_port == settings.mqtt_port
    assert agent.serial_port == "/dev/ttyS3"
    assert agent.server_url == settings.public_url
    assert agent.heartbeat_interval_s == settings.heartbeat_interval_s
    assert agent.development is False
    with session_scope(seeded) as session:
        stored = cabinet(session, world.a.kiosk_id)
        assert stored.hmac_key == bundle["hmac_key"]
        assert stored.broker_username == world.a.kiosk_id
        assert stored.broker_password_hash is not None
        assert verify_mosquitto_password(stored.broker_password_hash, bundle["broker_password"])
        assert bundle["password_file_line"] == f"{world.a.kiosk_id}:{stored.broker_password_hash}"
    assert f"topic write zhigui/v1/kiosks/{world.a.kiosk_id}/sales" in bundle["acl_entries"]


def test_cabinet_broker_address_overrides(
    world: World,
    seeded: sessionmaker[Session],
    engine: sa.Engine,
    database_url: str,
    tmp_path: Path,
) -> None:
    from fleet_server.app import create_app
    from server_helpers import TEST_SECRET_KEY

    settings = ServerSettings(
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,
        mqtt_host="10.0.0.5",
        cabinet_broker_host="mqtt.campus.example.edu.cn",
        cabinet_broker_port=8883,
        cabinet_broker_tls=True,
        cabinet_serial_port="/dev/ttyUSB0",
        public_url="https://zhigui.example.edu.cn/",
    )
    with TestClient(create_app(settings, engine=engine)) as client:
        bundle = provision(client, world, role="province_admin")
    config_path = tmp_path / "agent.toml"
    config_path.write_text(bundle["agent_config_toml"], encoding="utf-8")

    agent = load_settings(config_path)

    assert agent.broker_host == "mqtt.campus.example.edu.cn"
    assert agent.broker_port == 8883
    assert agent.broker_tls is True
    assert agent.serial_port == "/dev/ttyUSB0"
    assert agent.server_url == "https://zhigui.example.edu.cn/"


def test_provision_again_replaces_credentials(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    first = provision(client, world)
    second = provision(client, world, role="province_admin")

    assert first["broker_password"] != second["broker_password"]
    assert first["hmac_key"] != second["hmac_key"]
    with session_scope(seeded) as session:
        stored = cabinet(session, world.a.kiosk_id)
        assert stored.broker_password_hash is not None
        assert not verify_mosquitto_password(stored.broker_password_hash, first["broker_password"])
        assert verify_mosquitto_password(stored.broker_password_hash, second["broker_password"])
        entries = list_audit_entries(session, object_type="cabinet", object_id=world.a.kiosk_id)
    provisions = [entry for entry in entries if entry.action == "cabinet.provision"]
    assert [entry.actor_label for entry in provisions] == ["operator-a", "province"]
    assert provisions[1].after is not None
    assert provisions[1].after["replaced_earlier_credentials"] is True
    logged = repr([entry.after for entry in provisions])
    for secret in (first["broker_password"], first["hmac_key"], second["hmac_key"]):
        assert secret not in logged


@pytest.mark.parametrize(
    ("role", "status", "code"),
    [
        pytest.param("operator_b", 404, "cabinet_not_found", id="other-operator"),
        pytest.param("school_admin_a", 403, "permission_denied", id="school-admin"),
        pytest.param("student", 403, "permission_denied", id="student"),
    ],
)
def test_provision_scope(
    client: TestClient, world: World, role: str, status: int, code: str
) -> None:
    response = client.post(
        f"/api/v1/cabinets/{world.a.kiosk_id}/provision", headers=world.headers[role]
    )

    assert response.status_code == status
    assert response.json()["code"] == code


def test_register_and_provision_in_one_step(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    response = client.post(
        "/api/v1/provisioning/cabinets",
        json={"kiosk_id": "AH-10357-0002", "placement_id": world.a.placement_id},
        headers=world.headers["operator_a"],
    )

    assert response.status_code == 201, response.json()
    assert response.json()["broker_username"] == "AH-10357-0002"
    with session_scope(seeded) as session:
        stored = cabinet(session, "AH-10357-0002")
        assert stored.operator_id == world.operator_a_id
        assert stored.hmac_key == response.json()["hmac_key"]


def qr_modules(path_data: str, origin: tuple[float, float], module: float) -> set[tuple[int, int]]:
    """Return the (row, column) of each dark module that the sticker's path draws."""
    dark = set()
    for rectangle in path_data.split("z")[:-1]:
        move, _, rest = rectangle.partition("h")
        x, y = (float(value) for value in move.removeprefix("M").split())
        width = float(rest.partition("v")[0])
        row = round((y - origin[1]) / module)
        first = round((x - origin[0]) / module)
        for column in range(first, first + round(width / module)):
            dark.add((row, column))
    return dark


def test_sticker_labels_and_qr_code(
    client: TestClient, world: World, settings: ServerSettings
) -> None:
    response = client.get(
        f"/api/v1/cabinets/{world.a.kiosk_id}/sticker.svg", headers=world.headers["school_admin_a"]
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(response.content)
    texts = [element.text or "" for element in root.iter(f"{SVG}text")]
    assert "消费扶贫智能专柜" in texts
    assert f"柜号：{world.a.kiosk_id}" in texts
    assert "学校：安徽大学" in texts
    assert "点位：学生公寓 1 号楼 1 层 一楼大厅东侧" in "".join(texts)
    assert "运营：皖北智柜运营有限公司" in texts
    url = f"{settings.public_url}/k/{world.a.kiosk_id}"
    description = root.find(f"{SVG}desc")
    assert description is not None
    assert description.text == url

    # The drawn modules are exactly the QR code of the cabinet's address.
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=0)
    code.add_data(url)
    code.make(fit=True)
    matrix = code.get_matrix()
    expected = {
        (row, column)
        for row, cells in enumerate(matrix)
        for column, dark in enumerate(cells)
        if dark
    }
    path = root.find(f"{SVG}path")
    assert path is not None
    module = QR_SIZE_MM / len(matrix)
    first_move = path.attrib["d"].removeprefix("M").split("h")[0].split()
    top_left = (12.0, float(first_move[1]))
    assert qr_modules(path.attrib["d"], top_left, module) == expected


# --- Command line ---------------------------------------------------------------------------


@pytest.fixture
def cli_world(world: World, database_url: str, monkeypatch: pytest.MonkeyPatch) -> World:
    """The two-school world in a database stamped at the operations revision."""
    command.stamp(alembic_config(database_url), "0002_operations")
    for name in (
        "ZHIGUI_MODE",
        "ZHIGUI_SECRET_KEY",
        "ZHIGUI_SETTINGS_FILE",
        "ZHIGUI_MQTT_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZHIGUI_DATABASE_URL", database_url)
    return world


def test_cli_provision_writes_files(
    cli_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kiosk_id = cli_world.a.kiosk_id
    out = tmp_path / "out"

    status = cli.main(["provision", kiosk_id, "--out", str(out)])

    assert status == 0, capsys.readouterr().err
    config_path = out / f"{kiosk_id}.agent.toml"
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    agent = load_settings(config_path)
    assert agent.kiosk_id == kiosk_id
    assert (out / f"{kiosk_id}.sticker.svg").read_text().startswith("<?xml")
    assert (out / f"{kiosk_id}.passwd").read_text().startswith(f"{kiosk_id}:$7$101$")
    assert (out / f"{kiosk_id}.acl").read_text().startswith(f"user {kiosk_id}\n")
    assert "broker-config" in capsys.readouterr().out


def test_cli_provision_again_needs_rotate(
    cli_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kiosk_id = cli_world.a.kiosk_id
    assert cli.main(["provision", kiosk_id, "--out", str(tmp_path)]) == 0
    first = load_settings(tmp_path / f"{kiosk_id}.agent.toml").hmac_key_bytes
    capsys.readouterr()

    refused = cli.main(["provision", kiosk_id, "--out", str(tmp_path)])
    refused_error = capsys.readouterr().err
    rotated = cli.main(["provision", kiosk_id, "--out", str(tmp_path), "--rotate"])

    assert refused == 1
    assert "--rotate" in refused_error
    assert rotated == 0
    assert load_settings(tmp_path / f"{kiosk_id}.agent.toml").hmac_key_bytes != first


def test_cli_provision_unknown_cabinet(
    cli_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["provision", "AH-00000-0000", "--out", str(tmp_path)])

    assert status == 1
    assert "Cabinet not found: AH-00000-0000" in capsys.readouterr().err


def test_cli_broker_config_needs_server_password(
    cli_world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["broker-config", "--out", str(tmp_path)])

    assert status == 1
    assert "ZHIGUI_MQTT_PASSWORD is not set" in capsys.readouterr().err
    assert not (tmp_path / "passwd").exists()


def test_cli_refuses_unmigrated_database(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ZHIGUI_DATABASE_URL", database_url)
    monkeypatch.setenv("ZHIGUI_MQTT_PASSWORD", "a-long-broker-password-for-tests")

    status = cli.main(["broker-config", "--out", str(tmp_path)])

    assert status == 1
    assert "needs revision 0002_operations" in capsys.readouterr().err


# --- Migration ------------------------------------------------------------------------------


def _concerns_operations(difference: object) -> bool:
    """Return whether an Alembic autogenerate difference touches what 0002_operations adds."""
    if isinstance(difference, list):
        return any(_concerns_operations(item) for item in difference)
    assert isinstance(difference, tuple)
    operation = difference[0]
    if operation in ("add_table", "remove_table"):
        return str(difference[1].name) in OPERATIONS_TABLES
    if operation in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        table = str(difference[1].table.name)
        names = {column.name for column in difference[1].columns}
        return table in OPERATIONS_TABLES or (table == "cabinets" and bool(names & CABINET_COLUMNS))
    if operation in ("add_column", "remove_column"):
        table, column = str(difference[2]), difference[3].name
        if (table, column) in LATER_COLUMNS:
            return False
        return table in OPERATIONS_TABLES or (table == "cabinets" and column in CABINET_COLUMNS)
    if operation.startswith("modify_"):
        table, column = str(difference[2]), str(difference[3])
        return table in OPERATIONS_TABLES or (table == "cabinets" and column in CABINET_COLUMNS)
    return True


def test_migration_builds_operations_schema(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "0002_operations")

    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
        # Tables of migrations on other branches may be missing; ours must match exactly.
        ours = [difference for difference in differences if _concerns_operations(difference)]
        assert ours == []
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) >= OPERATIONS_TABLES
        columns = {column["name"] for column in inspector.get_columns("cabinets")}
        assert columns >= CABINET_COLUMNS
    finally:
        engine.dispose()


def test_migration_downgrade_removes_operations(database_url: str) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, "0002_operations")

    command.downgrade(config, "0001")

    engine = create_db_engine(database_url)
    try:
        inspector = sa.inspect(engine)
        assert not OPERATIONS_TABLES & set(inspector.get_table_names())
        columns = {column["name"] for column in inspector.get_columns("cabinets")}
        assert not CABINET_COLUMNS & columns
    finally:
        engine.dispose()


def _set_status(client: TestClient, world: World, role: str, status: str) -> Any:
    return client.put(
        f"/api/v1/cabinets/{world.a.kiosk_id}/service-status",
        json={"service_status": status},
        headers=world.headers[role],
    )


def test_service_status_needs_credentials_first(client: TestClient, world: World) -> None:
    early = _set_status(client, world, "operator_a", "in_service")
    provision(client, world)
    started = _set_status(client, world, "operator_a", "in_service")
    paused = _set_status(client, world, "operator_a", "out_of_service")

    assert early.status_code == 422
    assert early.json()["code"] == "cabinet_not_provisioned"
    assert started.status_code == 200
    assert started.json() == {"kiosk_id": world.a.kiosk_id, "service_status": "in_service"}
    assert paused.json()["service_status"] == "out_of_service"


def test_retired_cabinet_stays_retired(client: TestClient, world: World) -> None:
    provision(client, world)
    _set_status(client, world, "operator_a", "retired")

    again = _set_status(client, world, "province_admin", "in_service")

    assert again.status_code == 422
    assert again.json()["code"] == "cabinet_retired"


@pytest.mark.parametrize(
    ("role", "status"),
    [("operator_b", 404), ("school_admin_a", 403), ("student", 403)],
)
def test_service_status_scope(client: TestClient, world: World, role: str, status: int) -> None:
    provision(client, world)

    response = _set_status(client, world, role, "in_service")

    assert response.status_code == status
