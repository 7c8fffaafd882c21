"""The broker goes away while students shop; every sale arrives once when it returns.

``ZHIGUI_BROKER_OUTAGE_S`` sets how long the broker stays down (600 s by
default, ten minutes); sessions authorized before the outage finish during it
and their sales wait in the agents' outboxes.
"""

import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_harness import (
    SIM_SHELVES,
    AgentProcess,
    StandInServer,
    planogram_command,
    unlock_command,
    wait_until,
)
from kiosk_agent.contract import SaleOutcome
from private_broker import PrivateBroker, run_private_broker
from simulator.control import ControlClient
from simulator.process import CabinetProcess

pytestmark = pytest.mark.mosquitto

OUTAGE_S = float(os.environ.get("ZHIGUI_BROKER_OUTAGE_S", "600"))
CABINETS = 3
BURST_ROUNDS = 6
WAIT_S = 60.0


@dataclass
class Cabinet:
    kiosk_id: str
    process: CabinetProcess
    agent: AgentProcess
    server: StandInServer
    control: ControlClient
    taken: dict[uuid.UUID, Counter[str]]

    def start_session(self, rng: random.Random, timeout_s: float) -> uuid.UUID | None:
        """Unlock and open the door; return the session, or None if no unlock came in time."""
        command = unlock_command(self.kiosk_id, lifetime_s=30.0)
        self.server.send(command)
        try:
            wait_until(
                lambda: "unlocked" in self.server.session_states(command.session_id),
                timeout_s,
                "the unlock",
            )
        except AssertionError:
            return None
        actor = str(command.session_id)
        self.control.request("open_door", door=0, actor=actor)
        shelf = rng.choice([0, 1])
        count = rng.choice([1, 2])
        self.control.request(
            "take", shelf=shelf, product=SIM_SHELVES[shelf][0], count=count, actor=actor
        )
        self.taken[command.session_id] = Counter({SIM_SHELVES[shelf][0]: count})
        return command.session_id

    def close(self, session_id: uuid.UUID) -> None:
        self.control.request("close_door", door=0, actor=str(session_id))


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[PrivateBroker, list[Cabinet]]]:
    with ExitStack() as stack:
        broker = stack.enter_context(run_private_broker())
        cabinets = []
        for index in range(CABINETS):
            kiosk_id = f"AH-10357-{910 + index:04d}"
            process = CabinetProcess(["--seed", str(40 + index), "--settle-s", "0.3"])
            process.start()
            stack.callback(process.stop)
            server = StandInServer("127.0.0.1", broker.port, kiosk_id)
            stack.callback(server.close)
            directory = tmp_path / kiosk_id
            directory.mkdir()
            agent = AgentProcess(
                directory,
                kiosk_id=kiosk_id,
                serial_port=process.tty,
                broker=("127.0.0.1", broker.port),
                reconnect_max_s=15.0,
                open_timeout_s=30.0,
            )
            agent.start()
            stack.callback(agent.stop)
            control = ControlClient(process.control)
            stack.callback(control.close)
            cabinets.append(Cabinet(kiosk_id, process, agent, server, control, {}))
        for cabinet in cabinets:
            cabinet.server.install_planogram(planogram_command, WAIT_S)
        yield broker, cabinets


def _assert_each_sale_once(cabinets: list[Cabinet]) -> None:
    for cabinet in cabinets:
        sale_ids: dict[uuid.UUID, set[uuid.UUID]] = {}
        for sale in cabinet.server.sales:
            sale_ids.setdefault(sale.session_id, set()).add(sale.sale_id)
        assert set(sale_ids) == set(cabinet.taken), cabinet.kiosk_id
        for session_id, taken in cabinet.taken.items():
            assert len(sale_ids[session_id]) == 1
            sale = cabinet.server.unique_sales()[session_id]
            assert sale.outcome is SaleOutcome.COMPLETED
            assert Counter({line.product_id: line.quantity for line in sale.lines}) == taken


@pytest.mark.timeout(OUTAGE_S + 600)
def test_sales_made_while_broker_is_down_arrive_once(
    fleet: tuple[PrivateBroker, list[Cabinet]],
) -> None:
    broker, cabinets = fleet
    rng = random.Random(7)
    sessions = [cabinet.start_session(rng, WAIT_S) for cabinet in cabinets]
    assert all(sessions)

    broker.stop()
    for cabinet, session_id in zip(cabinets, sessions, strict=True):
        assert session_id is not None
        cabinet.close(session_id)
    time.sleep(OUTAGE_S)
    broker.start()

    for cabinet in cabinets:
        wait_until(lambda c=cabinet: len(c.server.unique_sales()) == len(c.taken), 120.0, "sales")
    _assert_each_sale_once(cabinets)


@pytest.mark.timeout(900)
def test_broker_restart_mid_burst_loses_nothing(
    fleet: tuple[PrivateBroker, list[Cabinet]],
) -> None:
    broker, cabinets = fleet
    rng = random.Random(8)

    for round_number in range(BURST_ROUNDS):
        if round_number == BURST_ROUNDS // 2:
            broker.stop()
            broker.start()
        for cabinet in cabinets:
            session_id = cabinet.start_session(rng, timeout_s=10.0)
            if session_id is not None:
                cabinet.close(session_id)
        for cabinet in cabinets:
            wait_until(lambda c=cabinet: c.server.ready(), WAIT_S, "idle agents")

    for cabinet in cabinets:
        wait_until(lambda c=cabinet: len(c.server.unique_sales()) == len(c.taken), 120.0, "sales")
    assert sum(len(cabinet.taken) for cabinet in cabinets) >= CABINETS * (BURST_ROUNDS - 1)
    _assert_each_sale_once(cabinets)
