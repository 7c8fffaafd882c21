"""A campus on one machine for end-to-end tests: server, ingest, agents and virtual boards.

``campus_stack`` wires the parts as ``kiosk-sim demo`` does, but on the test's own
database and broker. In this process: the fleet server app under uvicorn
(``browser_fixtures.live_server``), the command publisher, one ingest worker and the
monitoring subscriber. As child processes: one virtual board (``kiosk-sim cabinet``) and
one real ``kiosk-agent`` per cabinet. Each cabinet is provisioned, given a planogram of
catalog products and put in service through the API, as its operator would, and the
stack waits until every cabinet is online with its planogram in force.

A test then acts as the student at the cabinet through ``StackCabinet.control()``, the
board's control socket, and reads what really left the shelves with ``kept_items()``.
It needs the ``mqtt_broker`` fixture (tests/conftest.py) and the database fixtures::

    pytest_plugins = ["server_fixtures", "browser_fixtures"]

    def test_something(settings, engine, world, mqtt_broker, tmp_path):
        with campus_stack(
            settings=settings,
            engine=engine,
            broker=mqtt_broker,
            workdir=tmp_path / "campus",
            operator_user_id=world.operator_a_user_id,
            kiosk_ids=[world.a.kiosk_id],
        ) as stack:
            cabinet = stack.cabinets[world.a.kiosk_id]
            url = cabinet.purchase_url(stack.base_url)
"""

import contextlib
import json
import os
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from browser_fixtures import live_server
from fleet_server.app import create_app
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import create_session_factory
from fleet_server.core.security import issue_token
from fleet_server.ingest.runner import (
    broker_address,
    build_ingest_worker,
    build_monitoring_subscriber,
)
from fleet_server.messaging.publisher import MqttPublisher
from kiosk_agent.purchase_code import purchase_code, purchase_url, window_at
from simulator.control import ControlClient
from simulator.demo import (
    MAX_PACK_G,
    MAX_PACK_PRICE_FEN,
    MIN_PACK_G,
    PACK_SPREAD,
    SETTLE_S,
    SHELF_CAPACITY_ITEMS,
    ProcessGroup,
    free_port,
    read_first_line,
    toml_value,
)

STARTUP_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.2
# The agent reports status and telemetry this often, so monitoring marks it online quickly.
AGENT_HEARTBEAT_S = 1.0
# Time a test has to open the door after the unlock before the agent cancels the session.
AGENT_OPEN_TIMEOUT_S = 30.0
AGENT_SETTLE_TIMEOUT_S = 10.0
STAFF_TOKEN_TTL_S = 3600
UNLOCK_WAIT_TIMEOUT_S = 30.0
# Well inside the agent's 500 ms unlock pulse.
LOCK_POLL_INTERVAL_S = 0.02
PLANOGRAM_ATTEMPTS = 10


@dataclass(frozen=True)
class ShelfProduct:
    """The one product stocked on a shelf, as the planogram and the board both have it."""

    shelf: int
    door: int
    product_id: int
    name: str
    county: str
    unit_weight_g: int
    price_fen: int

    @property
    def board_id(self) -> str:
        """Return the product id on the board and in the MQTT contract: the catalog id."""
        return str(self.product_id)


@dataclass
class StackCabinet:
    kiosk_id: str
    key: bytes
    shelves: list[ShelfProduct]
    control_path: Path
    tty: str

    def current_code(self) -> str:
        """Return the purchase code the cabinet screen shows now."""
        return purchase_code(self.key, self.kiosk_id, window_at(time.time()))

    def purchase_url(self, base_url: str) -> str:
        """Return the URL of the QR code on the cabinet screen now."""
        return purchase_url(base_url, self.kiosk_id, self.current_code())

    def control(self) -> ControlClient:
        return ControlClient(self.control_path)

    def shelf(self, index: int) -> ShelfProduct:
        return self.shelves[index]

    def open_door_when_unlocked(
        self, door: int, actor: str, timeout_s: float = UNLOCK_WAIT_TIMEOUT_S
    ) -> None:
        """Pull the door open as soon as the lock releases, as a student at the cabinet does.

        The agent pulses the lock for only half a second, so a person opens the door when
        the lock clicks, not when the phone has caught up.
        """
        deadline = time.monotonic() + timeout_s
        with self.control() as control:
            while True:
                doors = control.request("status")["doors"]
                if doors[door]["lock"] == "RELEASED":
                    control.request("open_door", door=door, actor=actor)
                    return
                if time.monotonic() > deadline:
                    pytest.fail(f"{self.kiosk_id}: the lock of door {door} did not release")
                time.sleep(LOCK_POLL_INTERVAL_S)

    def kept_items(self) -> Counter[int]:
        """Return the packs taken and not put back, by shelf, from the board's ground truth."""
        with self.control() as control:
            records = control.request("ground_truth")["records"]
        kept: Counter[int] = Counter()
        for record in records:
            if record["action"] == "take":
                kept[record["shelf"]] += record["count"]
            elif record["action"] == "put":
                kept[record["shelf"]] -= record["count"]
        return +kept


@dataclass
class CampusStack:
    base_url: str
    settings: ServerSettings
    cabinets: dict[str, StackCabinet]
    workdir: Path


class StaffApi:
    """The API as a staff account calls it, with a bearer token."""

    def __init__(self, base_url: str, settings: ServerSettings, user_id: int) -> None:
        token = issue_token(
            secret=settings.resolved_secret_key, user_id=user_id, ttl_s=STAFF_TOKEN_TTL_S
        )
        self.client = httpx.Client(
            base_url=f"{base_url}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
        )

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.client.request(method, path, json=body)
        if response.is_error:
            pytest.fail(f"{method} {path} failed with HTTP {response.status_code}: {response.text}")
        return response.json()


def candidate_products(api: StaffApi) -> list[dict[str, Any]]:
    """Return catalog products that suit a virtual board, those of new counties first.

    Different counties make a receipt show each line's own source county.
    """
    today = date.today().isoformat()
    products = api.call("GET", f"/products?valid_on={today}&limit=500")["items"]
    suitable = [
        product
        for product in sorted(products, key=lambda product: product["id"])
        if MIN_PACK_G <= product["unit_weight_g"] <= MAX_PACK_G
        and 0 < product["price_fen"] <= MAX_PACK_PRICE_FEN
    ]
    seen: set[int] = set()
    first: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for product in suitable:
        county_id = product["source_county"]["id"]
        (rest if county_id in seen else first).append(product)
        seen.add(county_id)
    return first + rest


def save_planogram(api: StaffApi, kiosk_id: str, shelves: int, doors: int) -> list[ShelfProduct]:
    """Save a planogram of one product per shelf, trying the next products on a 422."""
    candidates = candidate_products(api)
    for attempt in range(PLANOGRAM_ATTEMPTS):
        chosen = candidates[attempt : attempt + shelves]
        if len(chosen) < shelves:
            break
        body = {
            "shelves": [
                {
                    "shelf": shelf,
                    "capacity_items": SHELF_CAPACITY_ITEMS,
                    "products": [{"product_id": product["id"]}],
                }
                for shelf, product in enumerate(chosen)
            ]
        }
        response = api.client.put(f"/cabinets/{kiosk_id}/planogram", json=body)
        if response.status_code == 422:
            continue
        if response.is_error:
            pytest.fail(f"saving the planogram of {kiosk_id} failed: {response.text}")
        return [
            ShelfProduct(
                shelf=shelf,
                door=shelf * doors // shelves,
                product_id=product["id"],
                name=product["name"],
                county=product["source_county"]["name"],
                unit_weight_g=product["unit_weight_g"],
                price_fen=product["price_fen"],
            )
            for shelf, product in enumerate(chosen)
        ]
    pytest.fail(f"no decodable planogram of {shelves} catalog products found for {kiosk_id}")


def child_env() -> dict[str, str]:
    """Return this process's environment without settings meant for the server or agent."""
    return {key: value for key, value in os.environ.items() if not key.startswith("ZHIGUI_")}


def write_scenario(path: Path, shelves: list[ShelfProduct], doors: int, seed: int) -> None:
    """Write the board's scenario: the planogram's products on the same shelves, fully stocked."""
    lines = [
        "[cabinet]",
        f"doors = {doors}",
        f"shelves = {len(shelves)}",
        f"seed = {seed}",
        "",
        "[scale]",
        f"settle_s = {SETTLE_S}",
    ]
    for product in shelves:
        lines += [
            "",
            "[[shelves]]",
            f"door = {product.door}",
            "",
            "  [[shelves.products]]",
            f"  id = {toml_value(product.board_id)}",
            f"  name = {toml_value(product.name)}",
            f"  unit_weight_g = {product.unit_weight_g}",
            f"  stock = {SHELF_CAPACITY_ITEMS}",
            f"  spread = {PACK_SPREAD}",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def start_board(
    group: ProcessGroup,
    directory: Path,
    socket_dir: Path,
    kiosk_id: str,
    shelves: list[ShelfProduct],
    doors: int,
) -> tuple[str, Path]:
    """Start the virtual board and return its tty and control socket."""
    scenario = directory / "scenario.toml"
    write_scenario(scenario, shelves, doors, seed=sum(kiosk_id.encode()))
    child = group.start(
        f"board-{kiosk_id}",
        [
            sys.executable,
            "-m",
            "simulator.cli",
            "cabinet",
            "--scenario",
            str(scenario),
            "--ground-truth",
            str(directory / "ground_truth.jsonl"),
            "--control-socket",
            str(socket_dir / f"{kiosk_id}.sock"),
        ],
        child_env(),
        stdout_pipe=True,
    )
    announcement = json.loads(read_first_line(child))
    return str(announcement["tty"]), Path(announcement["control"])


def start_agent(
    group: ProcessGroup, directory: Path, kiosk_id: str, config_toml: str, tty: str, base_url: str
) -> None:
    """Start ``kiosk-agent`` with its provisioned config, pointed at the board and server."""
    values = tomllib.loads(config_toml)
    values.update(
        serial_port=tty,
        server_url=base_url,
        data_dir=str(directory / "data"),
        screen_port=free_port(),
        heartbeat_interval_s=AGENT_HEARTBEAT_S,
        open_timeout_s=AGENT_OPEN_TIMEOUT_S,
        settle_timeout_s=AGENT_SETTLE_TIMEOUT_S,
    )
    config = directory / "agent.toml"
    config.touch(mode=0o600)
    config.write_text(
        "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items()),
        encoding="utf-8",
    )
    group.start(
        f"agent-{kiosk_id}",
        [sys.executable, "-m", "kiosk_agent.cli", "--config", str(config)],
        child_env(),
    )


def wait_until_ready(api: StaffApi, kiosk_ids: Sequence[str], group: ProcessGroup) -> None:
    """Wait until every cabinet is online, its serial link up and its planogram in force."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    waiting = set(kiosk_ids)
    while waiting:
        group.check_alive()
        for kiosk_id in sorted(waiting):
            state = api.call("GET", f"/fleet/cabinets/{kiosk_id}")
            if (
                state["connection"] == "online"
                and state["serial_link_up"]
                and state["planogram_version"] is not None
                and state["planogram_version"] == state["planogram_latest_version"]
            ):
                waiting.discard(kiosk_id)
        if waiting and time.monotonic() > deadline:
            logs = "\n".join(f"{child.name}: {child.log_path}" for child in group.children)
            pytest.fail(
                f"cabinets {', '.join(sorted(waiting))} were not ready in {STARTUP_TIMEOUT_S} s; "
                f"logs:\n{logs}"
            )
        time.sleep(POLL_INTERVAL_S)


@contextlib.contextmanager
def campus_stack(
    *,
    settings: ServerSettings,
    engine: Engine,
    broker: tuple[str, int],
    workdir: Path,
    operator_user_id: int,
    kiosk_ids: Sequence[str],
    shelves: int = 4,
    doors: int = 1,
) -> Iterator[CampusStack]:
    """Run the server, ingest, boards and agents for registered cabinets until the block ends.

    ``kiosk_ids`` name cabinets already registered in the database, all run by the
    operator account ``operator_user_id``. With the default of one door, a purchase
    (which opens door 0) reaches every shelf.
    """
    stack_settings = settings.model_copy(update={"mqtt_host": broker[0], "mqtt_port": broker[1]})
    factory = create_session_factory(engine)
    publisher = MqttPublisher(broker_address(stack_settings))
    worker = build_ingest_worker(stack_settings, factory)
    monitor = build_monitoring_subscriber(stack_settings, factory, publisher)
    workdir.mkdir(parents=True, exist_ok=True)
    group = ProcessGroup(workdir)
    with contextlib.ExitStack() as cleanup:
        # A Unix socket path has at most 107 bytes, which a deep pytest directory can exceed.
        socket_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="zhigui-")))
        publisher.start()
        cleanup.callback(publisher.stop)
        worker.start()
        cleanup.callback(worker.stop)
        monitor.start()
        cleanup.callback(monitor.stop)
        app = create_app(stack_settings, engine=engine, command_publisher=publisher)
        base_url = cleanup.enter_context(live_server(app))
        # Stopped before the server, so the agents' last words still reach it.
        cleanup.callback(group.stop_all)
        api = StaffApi(base_url, stack_settings, operator_user_id)
        cleanup.callback(api.close)

        cabinets: dict[str, StackCabinet] = {}
        for kiosk_id in kiosk_ids:
            bundle = api.call("POST", f"/cabinets/{kiosk_id}/provision")
            layout = save_planogram(api, kiosk_id, shelves, doors)
            api.call(
                "PUT", f"/cabinets/{kiosk_id}/service-status", {"service_status": "in_service"}
            )
            directory = workdir / kiosk_id
            directory.mkdir()
            tty, control_path = start_board(group, directory, socket_dir, kiosk_id, layout, doors)
            start_agent(group, directory, kiosk_id, bundle["agent_config_toml"], tty, base_url)
            cabinets[kiosk_id] = StackCabinet(
                kiosk_id=kiosk_id,
                key=bytes.fromhex(bundle["hmac_key"]),
                shelves=layout,
                control_path=control_path,
                tty=tty,
            )
        wait_until_ready(api, kiosk_ids, group)
        yield CampusStack(
            base_url=base_url, settings=stack_settings, cabinets=cabinets, workdir=workdir
        )
