"""The one-command campus demo: broker, fleet server, virtual cabinets, agents and students.

``run_demo`` builds a complete fleet in a new temporary directory. It starts an MQTT
broker, migrates and seeds a SQLite database, creates the accounts, provisions cabinets
at real Anhui universities through the API, and starts one ``kiosk-sim cabinet`` board
and one ``kiosk-agent`` per cabinet. Virtual students then buy through the same API a
phone uses. At the end the sales that the server recorded are compared, to the fen,
with the simulator's ground truth of what the students kept.

Every child runs in its own process group and is stopped when the demo ends.
"""

import argparse
import contextlib
import json
import logging
import os
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from fleet_server.reporting.periods import SHANGHAI, last_completed_week
from kiosk_agent.purchase_code import purchase_code, window_at
from simulator.control import ControlClient

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEMO_PASSWORD = "zhigui-demo-2024"
ADMIN_USERNAME = "demo-admin"
OPERATOR_USERNAME = "demo-operator"
OPERATOR_COMPANY = "安徽皖智柜运营有限公司"
# Each student's campus card gets this much before the first purchase.
TOP_UP_FEN = 100_000
DOORS = 2
SHELVES = 4
SHELF_CAPACITY_ITEMS = 20
# Packs between these label weights keep a shelf far below its 20 kg load limit and
# far above the scale's noise.
MIN_PACK_G = 50
MAX_PACK_G = 600
# Three packs of this price stay within the server's default payment hold of 100 yuan,
# so every sale is captured in full. NOTE: the server cannot raise that hold from the
# environment, because ZHIGUI_PURCHASE_HOLD_MAX_FEN is a strict integer that rejects strings.
MAX_PACK_PRICE_FEN = 3_000
# Relative standard deviation of a simulated pack's real weight. Three of them (0.6 %)
# stay inside the catalog's tolerance of 2 % or at least 5 g, so every pack decodes.
PACK_SPREAD = 0.002
SETTLE_S = 0.5
# Location type and building name, by number of the cabinet at its school.
LOCATIONS = (("dormitory", "学生公寓 {} 号楼"), ("canteen", "第 {} 学生食堂"))
# The campus each demo school gets before planning: beds of its dormitories and seats of
# its canteens, which the placement planner splits the cabinets by.
DORMITORY_BEDS = (1_200, 1_000, 900, 800, 1_100, 700)
CANTEEN_SEATS = (1_500, 900)
LIBRARY_SEATS = 2_000
STARTUP_TIMEOUT_S = 60.0
PURCHASE_STEP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.2
# Business hours of the simulated week, as minutes after midnight.
OPENING_MINUTE = 7 * 60 + 30
CLOSING_MINUTE = 22 * 60 + 30
# Width of the school column of the summary, in terminal columns.
SCHOOL_COLUMN = 24
WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
FINISHED_STATES = {"completed", "cancelled", "failed", "expired"}
UNLOCKED_STATES = {"unlocked", "door_open", "settling"}


class DemoError(Exception):
    """A step of the demo failed; the message names the step and where its log is."""


@dataclass(frozen=True)
class DemoOptions:
    cabinets: int = 3
    students: int = 12
    days: int = 7
    purchases: int | None = None
    seed: int = 2024
    broker: str = "embedded"
    database_url: str | None = None
    exit_when_done: bool = False
    summary_json: Path | None = None

    @property
    def purchase_count(self) -> int:
        """Return the number of purchases: by default two per cabinet per simulated day."""
        if self.purchases is not None:
            return self.purchases
        return 2 * self.cabinets * self.days


# --- Child processes ------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: "subprocess.Popen[bytes]"
    log_path: Path


class ProcessGroup:
    """Children started in their own sessions, stopped in reverse order by ``stop_all``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        stdout_pipe: bool = False,
    ) -> Child:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        """Raise ``DemoError`` if a child has exited."""
        for child in self.children:
            status = child.process.poll()
            if status is not None:
                raise DemoError(
                    f"{child.name} exited with status {status}; see its log {child.log_path}"
                )

    def stop_all(self) -> None:
        """Send SIGTERM to every child's group, newest first, and SIGKILL any that stay."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in reversed(self.children):
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop after SIGTERM; killing it", child.name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
            if child.process.stdout is not None:
                child.process.stdout.close()
        self.children.clear()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, child: Child, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if child.process.poll() is not None:
            raise DemoError(f"{child.name} exited during start-up; see its log {child.log_path}")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 1):
            return
        if time.monotonic() > deadline:
            raise DemoError(f"{child.name} did not listen on port {port} in {timeout_s} s")
        time.sleep(POLL_INTERVAL_S)


def read_first_line(child: Child, timeout_s: float = STARTUP_TIMEOUT_S) -> bytes:
    stdout = child.process.stdout
    assert stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise DemoError(f"{child.name} printed nothing in {timeout_s} s; see {child.log_path}")
    line = stdout.readline()
    if not line:
        raise DemoError(f"{child.name} exited during start-up; see its log {child.log_path}")
    return line


def start_broker(kind: str, group: ProcessGroup, workdir: Path) -> int:
    """Start an MQTT broker on a free loopback port that accepts any client; return the port."""
    port = free_port()
    if kind == "mosquitto":
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(binary, os.X_OK):
            raise DemoError("mosquitto not found: install it (apt-get install mosquitto)")
        config = workdir / "mosquitto.conf"
        config.write_text(
            f"listener {port} {LOOPBACK}\nallow_anonymous true\npersistence false\n"
            "log_dest stderr\n",
            encoding="utf-8",
        )
        argv = [binary, "-c", str(config)]
    else:
        config = workdir / "amqtt.yaml"
        config.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: {LOOPBACK}:{port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n",
            encoding="utf-8",
        )
        amqtt = Path(sys.executable).with_name("amqtt")
        if not amqtt.exists():
            raise DemoError(f"{amqtt} not found: install the dev dependencies (make demo)")
        argv = [str(amqtt), "-c", str(config)]
    child = group.start(f"broker-{kind}", argv, dict(os.environ))
    wait_for_port(port, child)
    return port


# --- Fleet server -------------------------------------------------------------------------


def server_env(
    options: DemoOptions, workdir: Path, mqtt_port: int, http_port: int
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ZHIGUI_")}
    env.update(
        ZHIGUI_MODE="development",
        ZHIGUI_DATABASE_URL=options.database_url or f"sqlite:///{workdir / 'zhigui.db'}",
        ZHIGUI_MQTT_HOST=LOOPBACK,
        ZHIGUI_MQTT_PORT=str(mqtt_port),
        ZHIGUI_HTTP_HOST=LOOPBACK,
        ZHIGUI_HTTP_PORT=str(http_port),
        ZHIGUI_PUBLIC_URL=f"http://{LOOPBACK}:{http_port}",
        ZHIGUI_HEARTBEAT_INTERVAL_S="5",
    )
    if options.broker == "embedded":
        # amqtt 0.12 delivers nothing to a $share/... subscription.
        env["ZHIGUI_INGEST_SHARED_SUBSCRIPTION"] = "false"
    return env


def fleet_server_program() -> str:
    """Return the ``fleet-server`` console script installed next to this Python."""
    program = Path(sys.executable).with_name("fleet-server")
    if program.exists():
        return str(program)
    on_path = shutil.which("fleet-server")
    if on_path is None:
        raise DemoError("fleet-server not found: install the project (pip install -e .)")
    return on_path


def fleet_command(args: Sequence[str], env: dict[str, str], stdin: str | None = None) -> str:
    """Run ``fleet-server ARGS`` to completion and return its standard output."""
    argv = [fleet_server_program(), "--log-level", "WARNING", *args]
    result = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, env=env, check=False, timeout=120
    )
    if result.returncode != 0:
        raise DemoError(
            f"fleet-server {args[0]} failed with status {result.returncode}: "
            f"{result.stderr.strip()}"
        )
    return result.stdout


def create_user(env: dict[str, str], username: str, role: str, *extra: str) -> int:
    """Create an account with ``fleet-server create-user`` and return its id."""
    output = fleet_command(
        ["create-user", "--username", username, "--role", role, "--password-stdin", *extra],
        env,
        stdin=DEMO_PASSWORD + "\n",
    )
    # The command prints: created user 'NAME' (id N, role ROLE)
    return int(output.split("(id ", 1)[1].split(",", 1)[0])


class Api:
    """HTTP client of the fleet server's API for one signed-in account."""

    def __init__(self, base_url: str, username: str) -> None:
        self.client = httpx.Client(base_url=f"{base_url}/api/v1", timeout=30.0)
        response = self.client.post(
            "/auth/token", json={"username": username, "password": DEMO_PASSWORD}
        )
        self._check(response, "sign in as " + username)
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def close(self) -> None:
        self.client.close()

    @staticmethod
    def _check(response: httpx.Response, what: str) -> None:
        if response.is_error:
            raise DemoError(f"{what} failed with HTTP {response.status_code}: {response.text}")

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        self._check(response, f"GET {path}")
        return response.json()

    def send(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.request(method, path, json=body)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.send("POST", path, body)
        self._check(response, f"POST {path}")
        return response.json()

    def list_all(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = self.get(path, limit=500, offset=len(items), **params)
            items += page["items"]
            if len(items) >= page["total"] or not page["items"]:
                return items


def wait_until_healthy(base_url: str, child: Child) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if child.process.poll() is not None:
            raise DemoError(f"the fleet server exited; see its log {child.log_path}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/api/v1/health", timeout=2).is_success:
                return
        if time.monotonic() > deadline:
            raise DemoError(
                f"the fleet server did not respond to /api/v1/health within {STARTUP_TIMEOUT_S} s"
            )
        time.sleep(POLL_INTERVAL_S)


# --- Fleet layout -------------------------------------------------------------------------


@dataclass
class ShelfProduct:
    product_id: int
    name: str
    unit_weight_g: int
    price_fen: int


@dataclass
class DemoCabinet:
    kiosk_id: str
    school: str
    location: str
    key: bytes
    agent_config: dict[str, Any]
    shelves: list[ShelfProduct] = field(default_factory=list)
    control_path: Path | None = None
    tty: str | None = None
    # The agent stamps its sales with the time in this file (simulated business time).
    clock_file: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def price_of(self, contract_product_id: str) -> int:
        for shelf in self.shelves:
            if str(shelf.product_id) == contract_product_id:
                return shelf.price_fen
        raise DemoError(f"{self.kiosk_id}: product {contract_product_id} is not in the planogram")


def pick_schools(admin: Api, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Pick ``count`` at random from the eight largest seeded universities by enrollment."""
    schools = [school for school in admin.list_all("/schools") if school["enrollment"]]
    if not schools:
        raise DemoError("the seeded schools have no enrollment figures; run fleet-server seed")
    universities = [school for school in schools if school["school_type"] == "undergraduate"]
    pool = sorted(universities or schools, key=lambda school: -int(school["enrollment"]))[:8]
    return sorted(rng.sample(pool, min(count, len(pool))), key=lambda school: school["id"])


def build_campus(admin: Api, school: dict[str, Any]) -> list[dict[str, Any]]:
    """Create the school's dormitories, canteens and library, with sizes and map positions.

    The positions are made up: a row of dormitories north of the canteens and the library,
    around a point in Hefei, so that the operator's map has something to draw.
    """
    center_lat = 31.840 + 0.010 * (school["id"] % 7)
    center_lon = 117.250 + 0.010 * (school["id"] % 5)
    layout = [
        (LOCATIONS[0][1].format(number), "dormitory", beds, 0.0020, 0.0012 * number)
        for number, beds in enumerate(DORMITORY_BEDS, start=1)
    ]
    layout += [
        (LOCATIONS[1][1].format(number), "canteen", seats, -0.0005, 0.0025 * number)
        for number, seats in enumerate(CANTEEN_SEATS, start=1)
    ]
    layout.append(("图书馆", "library", LIBRARY_SEATS, -0.0020, 0.0040))
    return [
        admin.post(
            f"/schools/{school['id']}/buildings",
            {
                "name": name,
                "location_type": location_type,
                "capacity": size,
                "latitude": round(center_lat + north, 6),
                "longitude": round(center_lon + east, 6),
            },
        )
        for name, location_type, size, north, east in layout
    ]


def school_admin_username(school: dict[str, Any]) -> str:
    return f"demo-school-{school['id']}"


def submit_plan(school_admin: Api, school: dict[str, Any]) -> dict[str, Any]:
    """Submit the planner's recommendation, with its default settings, as the school's plan."""
    plan: dict[str, Any] = school_admin.post(
        f"/schools/{school['id']}/placement-plan", {"note": "演示规划"}
    )
    return plan


def candidate_products(admin: Api) -> list[dict[str, Any]]:
    products = admin.list_all("/products", valid_on=date.today().isoformat())
    return [
        product
        for product in products
        if MIN_PACK_G <= product["unit_weight_g"] <= MAX_PACK_G
        and 0 < product["price_fen"] <= MAX_PACK_PRICE_FEN
    ]


def provision_cabinets(
    admin: Api,
    operator: Api,
    operator_id: int,
    schools: list[dict[str, Any]],
    options: DemoOptions,
    rng: random.Random,
) -> list[DemoCabinet]:
    """Create buildings and placements, provision the cabinets and save their planograms."""
    products = candidate_products(admin)
    if len(products) < SHELVES:
        raise DemoError(
            f"only {len(products)} certified products weigh {MIN_PACK_G}-{MAX_PACK_G} g "
            f"and cost at most {yuan(MAX_PACK_PRICE_FEN)}"
        )
    cabinets: list[DemoCabinet] = []
    for index in range(options.cabinets):
        school = schools[index % len(schools)]
        location_type, _ = LOCATIONS[index % len(LOCATIONS)]
        number = index // len(schools) + 1
        # Cabinets go into the school's planned buildings, dormitories and canteens in turn.
        candidates = [
            building
            for building in school["buildings"]
            if building["location_type"] == location_type
        ]
        building = candidates[(number - 1) // len(LOCATIONS) % len(candidates)]
        building_name = building["name"]
        placement = admin.post(
            f"/schools/{school['id']}/placements",
            {"building_id": building["id"], "floor": 1, "description": "一楼大厅"},
        )
        kiosk_id = f"AH-{school['id']:05d}-{number:04d}"
        bundle = operator.post(
            "/provisioning/cabinets",
            {"kiosk_id": kiosk_id, "placement_id": placement["id"], "operator_id": operator_id},
        )
        cabinet = DemoCabinet(
            kiosk_id=kiosk_id,
            school=school["name"],
            location=building_name,
            key=bytes.fromhex(bundle["hmac_key"]),
            agent_config=tomllib.loads(bundle["agent_config_toml"]),
        )
        cabinet.shelves = save_planogram(operator, kiosk_id, products, rng)
        cabinets.append(cabinet)
    return cabinets


def save_planogram(
    operator: Api, kiosk_id: str, products: list[dict[str, Any]], rng: random.Random
) -> list[ShelfProduct]:
    """Save a planogram of one product per shelf, retrying other products on a 422."""
    for _attempt in range(10):
        chosen = rng.sample(products, SHELVES)
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
        response = operator.send("PUT", f"/cabinets/{kiosk_id}/planogram", body)
        if response.status_code == 422:
            logger.info(
                "planogram of %s rejected, choosing other products: %s", kiosk_id, response.text
            )
            continue
        if response.is_error:
            raise DemoError(f"saving the planogram of {kiosk_id} failed: {response.text}")
        saved = response.json()["planogram"]
        return [
            ShelfProduct(
                product_id=shelf["products"][0]["product_id"],
                name=shelf["products"][0]["name"],
                unit_weight_g=round(shelf["products"][0]["unit_weight_g"]),
                price_fen=shelf["products"][0]["price_fen"],
            )
            for shelf in sorted(saved["shelves"], key=lambda shelf: shelf["shelf"])
        ]
    raise DemoError(f"no decodable planogram found for {kiosk_id} in 10 attempts")


def put_in_service(operator: "Api", kiosk_ids: list[str]) -> None:
    """Put the cabinets in service, as their operator does once they are installed."""
    for kiosk_id in kiosk_ids:
        response = operator.send(
            "PUT", f"/cabinets/{kiosk_id}/service-status", {"service_status": "in_service"}
        )
        operator._check(response, f"put {kiosk_id} in service")


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def write_scenario(cabinet: DemoCabinet, path: Path, seed: int) -> None:
    """Write the board's scenario: the planogram's products on the same shelves, fully stocked."""
    lines = [
        "[cabinet]",
        f"doors = {DOORS}",
        f"shelves = {SHELVES}",
        f"seed = {seed}",
        "",
        "[scale]",
        f"settle_s = {SETTLE_S}",
    ]
    for index, product in enumerate(cabinet.shelves):
        lines += [
            "",
            "[[shelves]]",
            f"door = {index * DOORS // SHELVES}",
            "",
            "  [[shelves.products]]",
            f"  id = {toml_value(str(product.product_id))}",
            f"  name = {toml_value(product.name)}",
            f"  unit_weight_g = {product.unit_weight_g}",
            f"  stock = {SHELF_CAPACITY_ITEMS}",
            f"  spread = {PACK_SPREAD}",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_agent_config(cabinet: DemoCabinet, path: Path, base_url: str, workdir: Path) -> None:
    """Write the provisioned agent config with the board's tty and local directories."""
    values = dict(cabinet.agent_config)
    assert cabinet.tty is not None
    cabinet.clock_file = workdir / "clock"
    cabinet.clock_file.write_text(datetime.now(UTC).isoformat(), encoding="utf-8")
    values.update(
        # The simulation clock is a development-mode setting.
        development=True,
        clock_file=str(cabinet.clock_file),
        serial_port=cabinet.tty,
        server_url=base_url,
        data_dir=str(workdir / "data"),
        screen_port=free_port(),
        heartbeat_interval_s=2.0,
        open_timeout_s=20.0,
        settle_timeout_s=10.0,
    )
    text = "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items())
    path.touch(mode=0o600)
    path.write_text(text, encoding="utf-8")


def start_cabinet(cabinet: DemoCabinet, group: ProcessGroup, workdir: Path, seed: int) -> None:
    directory = workdir / cabinet.kiosk_id
    directory.mkdir()
    scenario = directory / "scenario.toml"
    write_scenario(cabinet, scenario, seed)
    child = group.start(
        f"board-{cabinet.kiosk_id}",
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
            str(directory / "control.sock"),
        ],
        dict(os.environ),
        stdout_pipe=True,
    )
    announcement = json.loads(read_first_line(child))
    cabinet.tty = str(announcement["tty"])
    cabinet.control_path = Path(announcement["control"])


def start_agent(cabinet: DemoCabinet, group: ProcessGroup, workdir: Path, base_url: str) -> None:
    directory = workdir / cabinet.kiosk_id
    config = directory / "agent.toml"
    write_agent_config(cabinet, config, base_url, directory)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ZHIGUI_")}
    group.start(
        f"agent-{cabinet.kiosk_id}",
        [sys.executable, "-m", "kiosk_agent.cli", "--config", str(config)],
        env,
    )


def wait_until_ready(admin: Api, cabinets: list[DemoCabinet], group: ProcessGroup) -> None:
    """Wait until every cabinet is online, its serial link up and its planogram in force."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    waiting = {cabinet.kiosk_id for cabinet in cabinets}
    while waiting:
        group.check_alive()
        for kiosk_id in sorted(waiting):
            state = admin.get(f"/fleet/cabinets/{kiosk_id}")
            if (
                state["connection"] == "online"
                and state["serial_link_up"]
                and state["planogram_version"] is not None
                and state["planogram_version"] == state["planogram_latest_version"]
            ):
                waiting.discard(kiosk_id)
        if waiting and time.monotonic() > deadline:
            raise DemoError(
                f"cabinets {', '.join(sorted(waiting))} were not ready in {STARTUP_TIMEOUT_S} s"
            )
        time.sleep(0.5)


# --- Students and purchases -----------------------------------------------------------------


@dataclass
class Student:
    username: str
    school: str
    api: Api | None = None


@dataclass(order=True)
class PlannedPurchase:
    simulated_at: datetime
    number: int
    cabinet: DemoCabinet = field(compare=False)
    student: Student = field(compare=False)
    door: int = field(compare=False)
    seed: int = field(compare=False)


def create_students(
    env: dict[str, str], admin: Api, schools: list[dict[str, Any]], count: int
) -> list[Student]:
    """Create student accounts spread over the schools and top up their campus cards."""
    students = [
        Student(f"student-{index + 1:03d}", schools[index % len(schools)]["name"])
        for index in range(count)
    ]

    def create(student: Student) -> int:
        return create_user(env, student.username, "student", "--school", student.school)

    # Two at a time: each command is a Python process that hashes a password.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        user_ids = list(pool.map(create, students))
    for user_id in user_ids:
        admin.post(
            f"/wallets/{user_id}/top-ups",
            {"amount_fen": TOP_UP_FEN, "reference": f"demo-top-up-{user_id}", "note": "演示充值"},
        )
    return students


def plan_purchases(
    cabinets: list[DemoCabinet], students: list[Student], options: DemoOptions, rng: random.Random
) -> list[PlannedPurchase]:
    """Spread the purchases over the simulated days in business hours, each at a random cabinet.

    The simulated days are the last ``options.days`` days of whole reporting weeks that are
    already over, so that the schools can submit their reports at the end.
    """
    monday = datetime.combine(simulated_weeks(options.days)[0], datetime.min.time(), SHANGHAI)
    plans = []
    for number in range(options.purchase_count):
        cabinet = rng.choice(cabinets)
        local_students = [student for student in students if student.school == cabinet.school]
        student = rng.choice(local_students or students)
        minute = rng.randrange(OPENING_MINUTE, CLOSING_MINUTE)
        simulated_at = monday + timedelta(days=rng.randrange(options.days), minutes=minute)
        plans.append(
            PlannedPurchase(
                simulated_at, number, cabinet, student, rng.randrange(DOORS), rng.randrange(2**31)
            )
        )
    return sorted(plans)


@dataclass
class PurchaseResult:
    plan: PlannedPurchase
    state: str
    total_fen: int
    kept: int
    returned: int


def wait_for_state(api: Api, purchase_id: str, states: set[str], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + PURCHASE_STEP_TIMEOUT_S
    while True:
        purchase: dict[str, Any] = api.get(f"/purchases/{purchase_id}")
        if purchase["state"] in states:
            return purchase
        if purchase["state"] in FINISHED_STATES:
            raise DemoError(
                f"purchase {purchase_id} ended {purchase['state']} "
                f"({purchase['failure_code']}) while waiting for {what}"
            )
        if time.monotonic() > deadline:
            raise DemoError(
                f"purchase {purchase_id} stayed {purchase['state']} for "
                f"{PURCHASE_STEP_TIMEOUT_S} s while waiting for {what}"
            )
        time.sleep(POLL_INTERVAL_S)


def start_purchase(api: Api, cabinet: DemoCabinet, door: int) -> str:
    """POST the purchase with the cabinet's current code, as the phone page does."""
    deadline = time.monotonic() + PURCHASE_STEP_TIMEOUT_S
    while True:
        code = purchase_code(cabinet.key, cabinet.kiosk_id, window_at(time.time()))
        response = api.send(
            "POST", "/purchases", {"kiosk_id": cabinet.kiosk_id, "code": code, "door": door}
        )
        if response.is_success:
            return str(response.json()["id"])
        # The previous session may still be settling when the next student scans.
        if response.status_code == 409 and time.monotonic() < deadline:
            time.sleep(0.5)
            continue
        raise DemoError(
            f"POST /purchases at {cabinet.kiosk_id} failed with HTTP {response.status_code}: "
            f"{response.text}"
        )


def run_purchase(plan: PlannedPurchase, base_url: str) -> PurchaseResult:
    """One student's purchase: scan, wait for the unlock, visit the door, wait for the sale."""
    student = plan.student
    if student.api is None:
        student.api = Api(base_url, student.username)
    cabinet = plan.cabinet
    assert cabinet.control_path is not None
    assert cabinet.clock_file is not None
    # Jump the cabinet's business clock to the purchase's simulated time.
    cabinet.clock_file.write_text(plan.simulated_at.isoformat(), encoding="utf-8")
    purchase_id = start_purchase(student.api, cabinet, plan.door)
    wait_for_state(student.api, purchase_id, UNLOCKED_STATES, "the unlock")
    with ControlClient(cabinet.control_path) as control:
        visit = control.request(
            "student_visit",
            door=plan.door,
            actor=student.username,
            seed=plan.seed,
            take_nothing_p=0.0,
            max_items=3,
            put_back_p=0.2,
            wrong_shelf_p=0.0,
            leave_open_p=0.0,
            pause_s=[0.1, 0.4],
        )
    purchase = wait_for_state(student.api, purchase_id, FINISHED_STATES, "the sale")
    taken = len(visit["taken"])
    returned = len(visit["returned"])
    return PurchaseResult(
        plan, purchase["state"], purchase["total_fen"] or 0, taken - returned, returned
    )


def run_cabinet_queue(
    plans: list[PlannedPurchase],
    base_url: str,
    results: list[PurchaseResult],
    errors: list[BaseException],
    progress: "Progress",
) -> None:
    try:
        for plan in plans:
            result = run_purchase(plan, base_url)
            results.append(result)
            progress.report(result)
    except BaseException as error:  # handed to the main thread, which re-raises it
        errors.append(error)


class Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def report(self, result: PurchaseResult) -> None:
        plan = result.plan
        with self._lock:
            self.done += 1
            weekday = WEEKDAYS[plan.simulated_at.weekday()]
            returned = f", put {result.returned} back" if result.returned else ""
            print(
                f"  [{self.done:3d}/{self.total}] {weekday} {plan.simulated_at:%H:%M} "
                f"{plan.cabinet.kiosk_id} door {plan.door}: {plan.student.username} kept "
                f"{result.kept}{returned}, {result.state}, {yuan(result.total_fen)}",
                flush=True,
            )


def run_purchases(
    plans: list[PlannedPurchase], cabinets: list[DemoCabinet], base_url: str
) -> list[PurchaseResult]:
    """Run each cabinet's purchases in order, the cabinets in parallel."""
    results: list[PurchaseResult] = []
    errors: list[BaseException] = []
    progress = Progress(len(plans))
    threads = [
        threading.Thread(
            target=run_cabinet_queue,
            args=(
                [plan for plan in plans if plan.cabinet is cabinet],
                base_url,
                results,
                errors,
                progress,
            ),
            name=f"students-{cabinet.kiosk_id}",
            daemon=True,
        )
        for cabinet in cabinets
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


# --- Summary --------------------------------------------------------------------------------


def yuan(fen: int) -> str:
    """Format integer fen as yuan with two decimals, without floating point."""
    sign = "-" if fen < 0 else ""
    return f"¥{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def ground_truth_fen(cabinet: DemoCabinet) -> tuple[int, int]:
    """Return (packs kept, their value in fen) from the board's own record of every take and put."""
    assert cabinet.control_path is not None
    with ControlClient(cabinet.control_path) as control:
        records = control.request("ground_truth")["records"]
    kept: Counter[str] = Counter()
    for record in records:
        if record["action"] == "take":
            kept[record["product"]] += record["count"]
        elif record["action"] == "put":
            kept[record["product"]] -= record["count"]
    value = sum(count * cabinet.price_of(product) for product, count in kept.items())
    return sum(kept.values()), value


def display_width(text: str) -> int:
    """Return the terminal width of ``text``: two columns for each wide (CJK) character."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def summary_row(name: str, sales: int, server_fen: int, kept: int, truth_fen: int) -> str:
    padding = " " * max(0, SCHOOL_COLUMN - display_width(name))
    match = "yes" if server_fen == truth_fen else "NO"
    return (
        f"  {name}{padding} {sales:>5} {yuan(server_fen):>14} {kept:>10} "
        f"{yuan(truth_fen):>14}  {match}"
    )


@dataclass
class SchoolTotals:
    """Sales of one school as the server recorded them, next to the simulator's ground truth."""

    school: str
    sales: int = 0
    server_fen: int = 0
    # Packs that the students took and did not put back, by the boards' ground truth.
    kept: int = 0
    truth_fen: int = 0
    # 本期 of the school's submitted weekly reports, summed over the simulated weeks.
    reported_fen: int = 0

    @property
    def matched(self) -> bool:
        return self.server_fen == self.truth_fen


def collect_totals(admin: Api, cabinets: list[DemoCabinet]) -> list[SchoolTotals]:
    """Return each school's server totals and ground truth, in the order of the cabinets."""
    schools: dict[str, SchoolTotals] = {}
    for cabinet in cabinets:
        totals = schools.setdefault(cabinet.school, SchoolTotals(cabinet.school))
        for sale in admin.list_all("/sales", kiosk_id=cabinet.kiosk_id):
            totals.sales += 1
            totals.server_fen += sale["total_fen"]
        kept, value = ground_truth_fen(cabinet)
        totals.kept += kept
        totals.truth_fen += value
    return list(schools.values())


def print_summary(schools: list[SchoolTotals]) -> None:
    """Print the server's sales per school next to the ground truth, with a total row."""
    print("\nSales summary (server records vs. simulator ground truth, planogram prices):")
    header = f"  {'school':<{SCHOOL_COLUMN}} {'sales':>5} {'server total':>14} "
    print(header + f"{'packs kept':>10} {'ground truth':>14}  match")
    for totals in schools:
        print(
            summary_row(
                totals.school, totals.sales, totals.server_fen, totals.kept, totals.truth_fen
            )
        )
    print(
        summary_row(
            "total",
            sum(totals.sales for totals in schools),
            sum(totals.server_fen for totals in schools),
            sum(totals.kept for totals in schools),
            sum(totals.truth_fen for totals in schools),
        )
    )


def simulated_weeks(days: int) -> list[date]:
    """Return the Mondays of the whole weeks, already over, that ``days`` simulated days need."""
    last = last_completed_week(datetime.now(UTC))
    count = max(1, -(-days // 7))
    return [last.monday - timedelta(weeks=count - 1 - index) for index in range(count)]


def submit_and_print_reports(
    school_admins: dict[int, Api], schools: list[dict[str, Any]], weeks: list[date]
) -> dict[str, int]:
    """Submit each school's reports of the simulated weeks and print the last one.

    The last report shows 本期 and 累计 in total and by source county. Returns each
    school's 本期 summed over the submitted reports, in fen.
    """
    reported: dict[str, int] = {school["name"]: 0 for school in schools}
    for week in weeks:
        for school in schools:
            submitted = school_admins[school["id"]].post(
                f"/schools/{school['id']}/procurement/reports/{week}/submit", {}
            )
            reported[school["name"]] += submitted["period_fen"]
    week = weeks[-1]
    print(f"\nWeekly procurement reports (采购信息表) submitted for the week of {week}, in 万元:")
    for school in schools:
        report = school_admins[school["id"]].get(
            f"/schools/{school['id']}/procurement/reports/{week}"
        )
        print(
            f"  {school['name']}: 本期 {report['period_wan']}  累计 {report['year_to_date_wan']}"
            f"  ({report['period_fen']} fen this week, status {report['status']})",
            flush=True,
        )
        for row in report["by_county"]:
            print(
                f"    {row['county_name']:<8} 本期 {row['period_wan']:>8}  "
                f"累计 {row['year_to_date_wan']:>8}",
                flush=True,
            )
    return reported


def write_summary_json(path: Path, schools: list[SchoolTotals], options: DemoOptions) -> None:
    """Write the summary for programs: amounts in integer fen, one entry per school.

    The file contains ``{"seed", "broker", "database", "matched", "schools": [{"school",
    "sales", "server_fen", "kept", "truth_fen", "reported_fen", "matched"}]}``. ``database`` is the
    backend name only, because a database URL can contain a password.
    """
    database = "sqlite"
    if options.database_url is not None:
        database = options.database_url.split(":", 1)[0].split("+", 1)[0]
    summary = {
        "seed": options.seed,
        "broker": options.broker,
        "database": database,
        "matched": all(totals.matched for totals in schools),
        "schools": [
            {
                "school": totals.school,
                "sales": totals.sales,
                "server_fen": totals.server_fen,
                "kept": totals.kept,
                "truth_fen": totals.truth_fen,
                "reported_fen": totals.reported_fen,
                "matched": totals.matched,
            }
            for totals in schools
        ],
    }
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# --- Entry point ----------------------------------------------------------------------------


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_demo(options: DemoOptions) -> int:
    """Run the demo; return 0 when the server's sales match the ground truth, else 1."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="zhigui-demo-"))
    group = ProcessGroup(workdir)
    rng = random.Random(options.seed)
    apis: list[Api] = []
    students: list[Student] = []
    print(
        f"kiosk-sim demo: working directory {workdir} (logs of every process are here)", flush=True
    )
    try:
        mqtt_port = start_broker(options.broker, group, workdir)
        print(f"  broker ({options.broker}) on {LOOPBACK}:{mqtt_port}", flush=True)
        http_port = free_port()
        base_url = f"http://{LOOPBACK}:{http_port}"
        env = server_env(options, workdir, mqtt_port, http_port)
        fleet_command(["migrate"], env)
        fleet_command(["seed"], env)
        create_user(env, ADMIN_USERNAME, "province_admin", "--display-name", "省工作组")
        print("  database migrated and seeded; province admin created", flush=True)

        server = group.start(
            "fleet-server",
            [fleet_server_program(), "serve"],
            env,
        )
        wait_until_healthy(base_url, server)
        print(f"  fleet server at {base_url}", flush=True)
        admin = Api(base_url, ADMIN_USERNAME)
        apis.append(admin)

        operator_company = admin.post("/operators", {"name": OPERATOR_COMPANY})
        create_user(env, OPERATOR_USERNAME, "operator", "--operator", OPERATOR_COMPANY)
        operator = Api(base_url, OPERATOR_USERNAME)
        apis.append(operator)

        schools = pick_schools(admin, min(3, options.cabinets), rng)
        school_admins: dict[int, Api] = {}
        for school in schools:
            school["buildings"] = build_campus(admin, school)
            create_user(
                env, school_admin_username(school), "school_admin", "--school-id", str(school["id"])
            )
            school_admins[school["id"]] = Api(base_url, school_admin_username(school))
            apis.append(school_admins[school["id"]])
            plan = submit_plan(school_admins[school["id"]], school)
            print(
                f"  {school['name']}: {school['enrollment']} students, placement plan of "
                f"{plan['total']} cabinets submitted",
                flush=True,
            )
        cabinets = provision_cabinets(
            admin, operator, operator_company["id"], schools, options, rng
        )
        for cabinet in cabinets:
            print(
                f"  provisioned {cabinet.kiosk_id}: {cabinet.school} {cabinet.location}", flush=True
            )
            for shelf, product in enumerate(cabinet.shelves):
                print(
                    f"    shelf {shelf}: {product.name}, {product.unit_weight_g} g, "
                    f"{yuan(product.price_fen)}",
                    flush=True,
                )
        put_in_service(operator, [cabinet.kiosk_id for cabinet in cabinets])
        for index, cabinet in enumerate(cabinets):
            start_cabinet(cabinet, group, workdir, options.seed + index)
            start_agent(cabinet, group, workdir, base_url)
        students = create_students(env, admin, schools, options.students)
        print(
            f"  {len(students)} students created, each card topped up with {yuan(TOP_UP_FEN)}",
            flush=True,
        )
        wait_until_ready(admin, cabinets, group)
        print(
            f"  {len(cabinets)} boards and agents online ({time.monotonic() - started:.0f} s)",
            flush=True,
        )

        plans = plan_purchases(cabinets, students, options, rng)
        print(
            f"\n{len(plans)} purchases over {options.days} simulated days from "
            f"{simulated_weeks(options.days)[0]}, in business hours. Business time is "
            "accelerated: each cabinet's clock jumps to the next purchase's simulated time, "
            "and the sale carries that time.",
            flush=True,
        )
        run_purchases(plans, cabinets, base_url)
        # The last sale may still be in ingest when its purchase reads completed.
        time.sleep(1.0)
        school_totals = collect_totals(admin, cabinets)
        print_summary(school_totals)
        reported = submit_and_print_reports(school_admins, schools, simulated_weeks(options.days))
        for totals in school_totals:
            totals.reported_fen = reported.get(totals.school, 0)
        reports_match = all(totals.reported_fen == totals.truth_fen for totals in school_totals)
        print(
            "  the submitted reports' 本期 add up to the ground truth of every school: "
            + ("yes" if reports_match else "NO"),
            flush=True,
        )
        if options.summary_json is not None:
            write_summary_json(options.summary_json, school_totals, options)
        matched = reports_match and all(totals.matched for totals in school_totals)
        print(f"\nfinished in {time.monotonic() - started:.0f} s", flush=True)
        if not options.exit_when_done:
            print(
                f"\nThe fleet server keeps running at {base_url} (API docs at {base_url}/docs). "
                f"Sign in at {base_url}/login as {ADMIN_USERNAME} (province), "
                f"{OPERATOR_USERNAME} (operator) or "
                f"{', '.join(school_admin_username(school) for school in schools)} (schools) "
                f"or {students[0].username} to {students[-1].username} (students), "
                f"password {DEMO_PASSWORD}. "
                "Press Ctrl-C to stop every process.",
                flush=True,
            )
            with stop_on_signals() as stop:
                while not stop.wait(1.0):
                    group.check_alive()
        return 0 if matched else 1
    finally:
        for student in students:
            if student.api is not None:
                student.api.close()
        for api in apis:
            api.close()
        group.stop_all()
        print(f"kiosk-sim demo: stopped every process; logs are in {workdir}", flush=True)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="exit after the summary (status 0 only if the sales match the ground truth) "
        "instead of keeping the web server running until Ctrl-C",
    )
    parser.add_argument("--cabinets", type=int, default=3, help="number of cabinets (default 3)")
    parser.add_argument("--students", type=int, default=12, help="number of students (default 12)")
    parser.add_argument("--days", type=int, default=7, help="simulated days (default 7)")
    parser.add_argument(
        "--purchases",
        type=int,
        help="number of purchases (default: 2 per cabinet per simulated day)",
    )
    parser.add_argument("--seed", type=int, default=2024, help="seed of every random choice")
    parser.add_argument(
        "--broker",
        choices=("embedded", "mosquitto"),
        default="embedded",
        help="MQTT broker: embedded runs amqtt from the venv, mosquitto the installed "
        "Mosquitto (default embedded)",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy URL of an empty database (default: SQLite in the working directory)",
    )
    parser.add_argument(
        "--summary-json",
        type=Path,
        metavar="FILE",
        help="also write the sales summary to FILE as JSON, with amounts in integer fen",
    )


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    for name in ("cabinets", "students", "days"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} {getattr(args, name)} must be at least 1")
    if args.purchases is not None and args.purchases < 0:
        raise ValueError(f"--purchases {args.purchases} must be at least 0")
    return DemoOptions(
        cabinets=args.cabinets,
        students=args.students,
        days=args.days,
        purchases=args.purchases,
        seed=args.seed,
        broker=args.broker,
        database_url=args.database_url,
        exit_when_done=args.exit_when_done,
        summary_json=args.summary_json,
    )
