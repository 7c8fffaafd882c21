"""Kill the agent with SIGKILL at random points across many sessions; no sale is lost or doubled.

Each session's student tries the door, takes one or two packs and closes it,
while the agent is killed at a random point of some sessions (after the
command, with the door open, after the door closed) and restarted. At the end
every session that took goods must have exactly one sale, equal to what the
simulator's ground truth says was taken. ``ZHIGUI_KILL_SESSIONS`` sets the
number of sessions (200 by default).
"""

import os
import random
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from agent_harness import (
    AgentProcess,
    StandInServer,
    planogram_command,
    unlock_command,
    wait_until,
)
from kiosk_agent.contract import SaleOutcome
from simulator.control import ControlClient, ControlError
from simulator.process import CabinetProcess

pytestmark = pytest.mark.mosquitto

KIOSK_ID = "AH-10357-0903"
SESSIONS = int(os.environ.get("ZHIGUI_KILL_SESSIONS", "200"))
# One product per shelf; shelves 0 and 1 are behind door 0, where the students shop.
SHELVES = [
    ("dangshan-pear-crisps-80g", "砀山梨片 80 g", 80, 1_250),
    ("luan-guapian-tea-100g", "六安瓜片 100 g", 100, 5_800),
    ("jinzhai-green-tea-250g", "金寨绿茶 250 g", 250, 3_800),
    ("yuexi-bamboo-shoots-200g", "岳西笋干 200 g", 200, 2_600),
]
SCENARIO = """
[cabinet]
doors = 2
shelves = 4
seed = 31
unit_weight_spread = 0.03

[scale]
settle_s = 0.3

[[shelves]]
door = 0
capacity_g = 25000
  [[shelves.products]]
  id = "dangshan-pear-crisps-80g"
  name = "砀山梨片 80 g"
  unit_weight_g = 80
  stock = 220

[[shelves]]
door = 0
capacity_g = 25000
  [[shelves.products]]
  id = "luan-guapian-tea-100g"
  name = "六安瓜片 100 g"
  unit_weight_g = 100
  stock = 200

[[shelves]]
door = 1
  [[shelves.products]]
  id = "jinzhai-green-tea-250g"
  name = "金寨绿茶 250 g"
  unit_weight_g = 250
  stock = 10

[[shelves]]
door = 1
  [[shelves.products]]
  id = "yuexi-bamboo-shoots-200g"
  name = "岳西笋干 200 g"
  unit_weight_g = 200
  stock = 10
"""
KILL_POINTS = ["none", "none", "none", "after_command", "door_open", "after_close"]


def _try_open(control: ControlClient, actor: str, timeout_s: float) -> bool:
    """Try the door until the lock lets it open, as a student pulling the handle would."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            control.request("open_door", door=0, actor=actor)
            return True
        except ControlError:
            time.sleep(0.05)
    return False


def _truth_by_actor(control: ControlClient) -> dict[str, Counter[str]]:
    truth: dict[str, Counter[str]] = {}
    for record in control.request("ground_truth")["records"]:
        if record["action"] not in ("take", "put"):
            continue
        sign = 1 if record["action"] == "take" else -1
        truth.setdefault(record["actor"], Counter())[record["product"]] += sign * record["count"]
    return truth


@pytest.mark.timeout(60 + 10 * SESSIONS)
def test_sigkill_never_loses_or_doubles_a_sale(
    tmp_path: Path, mqtt_broker: tuple[str, int]
) -> None:
    rng = random.Random(2026)
    scenario = tmp_path / "crash.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    cabinet = CabinetProcess(["--scenario", str(scenario)])
    cabinet.start()
    server = StandInServer(*mqtt_broker, KIOSK_ID)
    agent = AgentProcess(
        tmp_path, kiosk_id=KIOSK_ID, serial_port=cabinet.tty, broker=mqtt_broker, open_timeout_s=8.0
    )
    agent.start()
    control = ControlClient(cabinet.control)
    kills = Counter[str]()
    opened: dict[uuid.UUID, bool] = {}
    try:
        server.install_planogram(lambda kiosk: planogram_command(kiosk, shelves=SHELVES), 60.0)

        for _ in range(SESSIONS):
            kill_at = rng.choice(KILL_POINTS)
            command = unlock_command(KIOSK_ID, lifetime_s=30.0)
            actor = str(command.session_id)
            wait_until(server.ready, 60.0, "the agent to be idle and ready")
            server.send(command)

            if kill_at == "after_command":
                time.sleep(rng.uniform(0.0, 0.4))
                agent.kill()
                agent.start()
            opened[command.session_id] = _try_open(control, actor, timeout_s=4.0)
            if opened[command.session_id]:
                shelf = rng.choice([0, 1])
                control.request(
                    "take",
                    shelf=shelf,
                    product=SHELVES[shelf][0],
                    count=rng.choice([1, 1, 2]),
                    actor=actor,
                )
                if kill_at == "door_open":
                    agent.kill()
                    agent.start()
                control.request("close_door", door=0, actor=actor)
            if kill_at == "after_close":
                time.sleep(rng.uniform(0.0, 1.2))
                agent.kill()
                agent.start()
            if kill_at != "none":
                kills[kill_at] += 1

            session_id = command.session_id
            wait_until(
                lambda session_id=session_id: bool(server.sales_for(session_id)),
                60.0,
                f"the sale of {actor}",
            )

        wait_until(
            lambda: server.ready() and server.telemetry[-1].backlog.sales == 0,
            60.0,
            "an empty outbox",
        )
        truth = _truth_by_actor(control)
    except AssertionError:
        print(agent.log()[-20_000:])
        raise
    finally:
        control.close()
        agent.stop()
        server.close()
        cabinet.stop()

    sales_by_session: dict[uuid.UUID, set[uuid.UUID]] = {}
    for sale in server.sales:
        sales_by_session.setdefault(sale.session_id, set()).add(sale.sale_id)
    assert sum(kills.values()) >= SESSIONS // 4, kills
    assert set(sales_by_session) == set(opened)
    for session_id, sale_ids in sales_by_session.items():
        assert len(sale_ids) == 1, f"session {session_id} has {len(sale_ids)} different sales"
    for session_id, sale in server.unique_sales().items():
        taken = +truth.get(str(session_id), Counter())
        charged = Counter({line.product_id: line.quantity for line in sale.lines})
        assert charged == taken, (session_id, sale.outcome, charged, taken)
        if not opened[session_id]:
            assert sale.outcome in (SaleOutcome.CANCELLED, SaleOutcome.DOOR_NOT_OPENED)
