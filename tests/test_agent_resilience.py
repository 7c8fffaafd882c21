"""The agent survives its serial line going away mid-session, and line noise."""

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

KIOSK_ID = "AH-10357-0901"
WAIT_S = 45.0


@dataclass
class Rig:
    agent: AgentProcess
    server: StandInServer
    control: ControlClient

    def unlock_and_open(self) -> uuid.UUID:
        command = unlock_command(KIOSK_ID)
        self.server.send(command)
        wait_until(
            lambda: "unlocked" in self.server.session_states(command.session_id), WAIT_S, "unlock"
        )
        self.control.request("open_door", door=0, actor=str(command.session_id))
        return command.session_id

    def take(self, session_id: uuid.UUID, shelf: int, count: int) -> None:
        self.control.request(
            "take", shelf=shelf, product=SIM_SHELVES[shelf][0], count=count, actor=str(session_id)
        )


@pytest.fixture
def rig(tmp_path: Path, mqtt_broker: tuple[str, int]) -> Iterator[Rig]:
    link = tmp_path / "ttyCABINET"
    cabinet = CabinetProcess(["--seed", "17", "--settle-s", "0.5", "--tty-link", str(link)])
    cabinet.start()
    server = StandInServer(*mqtt_broker, KIOSK_ID)
    agent = AgentProcess(tmp_path, kiosk_id=KIOSK_ID, serial_port=str(link), broker=mqtt_broker)
    agent.start()
    control = ControlClient(cabinet.control)
    try:
        server.install_planogram(planogram_command, WAIT_S)
        yield Rig(agent, server, control)
    except AssertionError:
        print(agent.log()[-10_000:])
        raise
    finally:
        control.close()
        agent.stop()
        server.close()
        cabinet.stop()


def test_cable_pulled_mid_session_loses_no_sale(rig: Rig) -> None:
    session_id = rig.unlock_and_open()
    rig.take(session_id, shelf=1, count=2)

    rig.control.request("unplug", down_s=3.0)
    wait_until(lambda: rig.server.events_of("serial_link_down"), WAIT_S, "the link-down event")
    rig.control.request("close_door", door=0, actor=str(session_id))

    wait_until(lambda: rig.server.sales_for(session_id), WAIT_S, "the sale")
    [sale] = rig.server.sales_for(session_id)
    assert sale.outcome is SaleOutcome.COMPLETED
    assert [(line.product_id, line.quantity) for line in sale.lines] == [(SIM_SHELVES[1][0], 2)]
    assert rig.server.events_of("serial_link_up")
    assert "Traceback" not in rig.agent.log()


def test_line_noise_is_survived_and_logged(rig: Rig) -> None:
    rig.control.request("inject_garbage", bytes=20_000, seed=5)
    during_noise = unlock_command(KIOSK_ID)
    rig.server.send(during_noise)

    wait_until(lambda: rig.server.sales_for(during_noise.session_id), WAIT_S, "the noisy session")
    wait_until(lambda: "serial line of cabinet" in rig.agent.log(), WAIT_S, "the noise warning")
    wait_until(rig.server.ready, WAIT_S, "the agent to be ready again")
    session_id = rig.unlock_and_open()
    rig.take(session_id, shelf=0, count=1)
    rig.control.request("close_door", door=0, actor=str(session_id))
    wait_until(lambda: rig.server.sales_for(session_id), WAIT_S, "the sale after the noise")

    [noisy] = rig.server.sales_for(during_noise.session_id)
    pulses = rig.control.request("status")["doors"][0]["pulse_count"]
    # The unlock sent into the noise either pulsed (and the agent learned so from the
    # board's last unlock token) or did not; either way it ends in one sale with no lines.
    assert noisy.lines == []
    assert noisy.outcome in (SaleOutcome.DOOR_NOT_OPENED, SaleOutcome.CANCELLED)
    assert (noisy.outcome is SaleOutcome.DOOR_NOT_OPENED) == (pulses == 2)
    [sale] = rig.server.sales_for(session_id)
    assert [(line.product_id, line.quantity) for line in sale.lines] == [(SIM_SHELVES[0][0], 1)]
    assert "Traceback" not in rig.agent.log()
