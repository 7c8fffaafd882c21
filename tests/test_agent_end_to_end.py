"""The kiosk agent as a process: virtual board, real broker, stand-in server."""

import uuid
from collections.abc import Iterator
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
from simulator.control import ControlClient
from simulator.process import CabinetProcess

pytestmark = pytest.mark.mosquitto

KIOSK_ID = "AH-10357-0902"
WAIT_S = 30.0


@dataclass
class Rig:
    cabinet: CabinetProcess
    agent: AgentProcess
    server: StandInServer
    control: ControlClient

    def pulses(self, door: int = 0) -> int:
        return int(self.control.request("status")["doors"][door]["pulse_count"])

    def buy(self, takes: list[tuple[int, int]], door: int = 0) -> uuid.UUID:
        """Run one purchase: unlock, open, take (shelf, count) pairs, close."""
        command = unlock_command(KIOSK_ID, door=door)
        self.server.send(command)
        wait_until(
            lambda: "unlocked" in self.server.session_states(command.session_id),
            WAIT_S,
            "the unlock",
        )
        self.control.request("open_door", door=door, actor="test")
        for shelf, count in takes:
            product_id = SIM_SHELVES[shelf][0]
            self.control.request("take", shelf=shelf, product=product_id, count=count, actor="test")
        self.control.request("close_door", door=door, actor="test")
        return command.session_id


@pytest.fixture
def rig(tmp_path: Path, mqtt_broker: tuple[str, int]) -> Iterator[Rig]:
    cabinet = CabinetProcess(["--seed", "11", "--settle-s", "0.5"])
    cabinet.start()
    server = StandInServer(*mqtt_broker, KIOSK_ID)
    agent = AgentProcess(tmp_path, kiosk_id=KIOSK_ID, serial_port=cabinet.tty, broker=mqtt_broker)
    agent.start()
    control = ControlClient(cabinet.control)
    try:
        server.install_planogram(planogram_command, WAIT_S)
        yield Rig(cabinet, agent, server, control)
    except AssertionError:
        print(agent.log())
        raise
    finally:
        control.close()
        agent.stop()
        server.close()
        cabinet.stop()


def test_signed_unlock_sells_exactly_what_was_taken(rig: Rig) -> None:
    session_id = rig.buy([(0, 2), (1, 1)])

    wait_until(lambda: rig.server.sales_for(session_id), WAIT_S, "the sale")
    [sale] = rig.server.sales_for(session_id)
    assert sale.outcome is SaleOutcome.COMPLETED
    assert {(line.product_id, line.quantity) for line in sale.lines} == {
        (SIM_SHELVES[0][0], 2),
        (SIM_SHELVES[1][0], 1),
    }
    assert sale.total_fen == 2 * SIM_SHELVES[0][3] + SIM_SHELVES[1][3]
    assert not sale.review.needed
    assert rig.pulses() == 1
    assert rig.server.session_states(session_id)[:3] == ["unlocked", "door_open", "settling"]


def test_nothing_taken_is_recorded(rig: Rig) -> None:
    session_id = rig.buy([])

    wait_until(lambda: rig.server.sales_for(session_id), WAIT_S, "the sale")
    [sale] = rig.server.sales_for(session_id)
    assert sale.outcome is SaleOutcome.NOTHING_TAKEN
    assert sale.lines == []


def test_door_not_opened_releases_the_session(rig: Rig) -> None:
    command = unlock_command(KIOSK_ID)

    rig.server.send(command)

    wait_until(lambda: rig.server.sales_for(command.session_id), WAIT_S, "the cancelled sale")
    [sale] = rig.server.sales_for(command.session_id)
    assert sale.outcome is SaleOutcome.DOOR_NOT_OPENED
    assert sale.lines == []
    assert sale.opened_at is None


def test_forged_expired_and_replayed_commands_never_pulse(rig: Rig) -> None:
    forged = unlock_command(KIOSK_ID).model_copy(update={"signature": "00" * 32})
    expired = unlock_command(KIOSK_ID, lifetime_s=5.0, issued_ago_s=10.0)
    other_kiosk = unlock_command("AH-OTHER-0002")
    valid = unlock_command(KIOSK_ID)

    for command in (forged, expired, other_kiosk):
        rig.server.send(command)
    rig.server.send_raw(b'{"v": 1, "type": "unlock", "garbage": true}')
    wait_until(
        lambda: len(rig.server.events_of("command_rejected")) >= 3, WAIT_S, "three rejections"
    )
    assert rig.pulses() == 0

    rig.server.send(valid)
    wait_until(lambda: rig.server.sales_for(valid.session_id), WAIT_S, "the valid session")
    rig.server.send(valid)
    wait_until(
        lambda: len(rig.server.events_of("command_rejected")) >= 4, WAIT_S, "the replay rejection"
    )

    reasons = {str(event.detail["reason"]) for event in rig.server.events_of("command_rejected")}
    assert reasons == {"bad_signature", "expired", "wrong_kiosk", "replayed_nonce"}
    assert rig.pulses() == 1
    assert len(rig.server.sales_for(valid.session_id)) == 1
