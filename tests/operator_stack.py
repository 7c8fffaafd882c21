"""A real campus for the operator's browser tests: broker, fleet server, board and agent.

``campus_stack`` starts what ``kiosk-sim demo`` starts, reusing its steps, for one
cabinet: ``fleet-server serve`` (HTTP, ingest, monitoring subscriber and command
publisher) on a SQLite database, one virtual board with a control socket and one real
``kiosk-agent``, all talking through the given MQTT broker. The cabinet is registered at
a building with coordinates, provisioned, given a planogram and put in service through
the API, and the context yields once monitoring reports it online with that planogram.
Every process runs in its own process group and is stopped when the context exits.
"""

import contextlib
import os
import random
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from simulator.demo import (
    ADMIN_USERNAME,
    DEMO_PASSWORD,
    OPERATOR_USERNAME,
    Api,
    DemoCabinet,
    DemoOptions,
    ProcessGroup,
    candidate_products,
    create_user,
    fleet_command,
    fleet_server_program,
    free_port,
    put_in_service,
    save_planogram,
    server_env,
    start_cabinet,
    toml_value,
    wait_until_healthy,
    wait_until_ready,
)

STACK_SCHOOL = "安徽大学"
STACK_OPERATOR = "皖智柜运营有限公司"
# Not a kiosk id of the other tests, whose retained status messages may share the broker.
STACK_KIOSK_ID = "AH-10357-0901"
STACK_BUILDING = {
    "name": "桔园 3 号学生公寓",
    "location_type": "dormitory",
    "latitude": 31.768573,
    "longitude": 117.184512,
}
STACK_PLACEMENT = {"floor": 1, "description": "一楼大厅东侧"}
# Agents and the server count heartbeats of this interval. One second keeps the live
# state on the board at most a second old.
HEARTBEAT_INTERVAL_S = 1.0
SEED = 11


@dataclass(frozen=True)
class CampusStack:
    base_url: str
    kiosk_id: str
    school_name: str
    control_path: Path
    operator_username: str
    password: str
    workdir: Path


def start_agent(cabinet: DemoCabinet, group: ProcessGroup, base_url: str, directory: Path) -> None:
    """Start a kiosk agent with the provisioned config, the board's tty and a fast heartbeat."""
    assert cabinet.tty is not None
    values = dict(cabinet.agent_config)
    values.update(
        serial_port=cabinet.tty,
        server_url=base_url,
        data_dir=str(directory / "data"),
        screen_port=free_port(),
        heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
    )
    config = directory / "agent.toml"
    config.touch(mode=0o600)
    config.write_text(
        "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items()),
        encoding="utf-8",
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("ZHIGUI_")}
    group.start(
        f"agent-{cabinet.kiosk_id}",
        [sys.executable, "-m", "kiosk_agent.cli", "--config", str(config)],
        env,
    )


@contextlib.contextmanager
def campus_stack(broker: tuple[str, int], workdir: Path) -> Iterator[CampusStack]:
    """Run the stack against the MQTT broker at ``broker``; logs stay in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    group = ProcessGroup(workdir)
    apis: list[Api] = []
    try:
        http_port = free_port()
        base_url = f"http://127.0.0.1:{http_port}"
        env = server_env(DemoOptions(broker="mosquitto"), workdir, broker[1], http_port)
        env["ZHIGUI_MQTT_HOST"] = broker[0]
        env["ZHIGUI_HEARTBEAT_INTERVAL_S"] = str(HEARTBEAT_INTERVAL_S)
        fleet_command(["migrate"], env)
        fleet_command(["seed"], env)
        create_user(env, ADMIN_USERNAME, "province_admin")
        server = group.start("fleet-server", [fleet_server_program(), "serve"], env)
        wait_until_healthy(base_url, server)

        admin = Api(base_url, ADMIN_USERNAME)
        apis.append(admin)
        company = admin.post("/operators", {"name": STACK_OPERATOR})
        create_user(env, OPERATOR_USERNAME, "operator", "--operator", STACK_OPERATOR)
        operator = Api(base_url, OPERATOR_USERNAME)
        apis.append(operator)

        [school] = [s for s in admin.list_all("/schools") if s["name"] == STACK_SCHOOL]
        building = admin.post(f"/schools/{school['id']}/buildings", STACK_BUILDING)
        placement = admin.post(
            f"/schools/{school['id']}/placements",
            {"building_id": building["id"], **STACK_PLACEMENT},
        )
        bundle = operator.post(
            "/provisioning/cabinets",
            {
                "kiosk_id": STACK_KIOSK_ID,
                "placement_id": placement["id"],
                "operator_id": company["id"],
            },
        )
        cabinet = DemoCabinet(
            kiosk_id=STACK_KIOSK_ID,
            school=STACK_SCHOOL,
            location=STACK_BUILDING["name"],
            key=bytes.fromhex(bundle["hmac_key"]),
            agent_config=tomllib.loads(bundle["agent_config_toml"]),
        )
        cabinet.shelves = save_planogram(
            operator, STACK_KIOSK_ID, candidate_products(admin), random.Random(SEED)
        )
        put_in_service(operator, [STACK_KIOSK_ID])

        start_cabinet(cabinet, group, workdir, SEED)
        start_agent(cabinet, group, base_url, workdir / STACK_KIOSK_ID)
        wait_until_ready(admin, [cabinet], group)
        assert cabinet.control_path is not None
        yield CampusStack(
            base_url=base_url,
            kiosk_id=STACK_KIOSK_ID,
            school_name=STACK_SCHOOL,
            control_path=cabinet.control_path,
            operator_username=OPERATOR_USERNAME,
            password=DEMO_PASSWORD,
            workdir=workdir,
        )
    finally:
        for api in apis:
            api.close()
        group.stop_all()
