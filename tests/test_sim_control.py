"""The control socket of a running ``kiosk-sim cabinet`` and the ground truth it serves.

A person acts on the cabinet through the socket while a host watches the tty,
as the agent's tests will do from another process.
"""

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_protocol.messages import (
    DoorClosed,
    DoorOpened,
    ReadWeights,
    ShelfStatus,
    Unlock,
    UnlockReply,
    WeightsReply,
)
from simulator.control import ControlClient, ControlError
from simulator.probe import HostProbe
from simulator.process import CabinetProcess

BAUD = 115200
ARGS = ["--seed", "8", "--settle-s", "0.2", "--log-level", "WARNING"]
# Default stock of shelf 0 and 1 (behind door 0) in a cabinet started without a scenario.
TEA = "jinzhai-green-tea-250g"
CRISPS = "dangshan-pear-crisps-80g"


def read_stable_weights(host: HostProbe) -> WeightsReply:
    """Wait for the shelves to move after a touch, then for every shelf to be stable."""
    readings: list[WeightsReply] = []

    def all_stable() -> bool:
        reply = host.call(ReadWeights(), WeightsReply)
        readings.append(reply)
        return all(shelf.status == ShelfStatus.STABLE for shelf in reply.shelves)

    host.run_until(lambda: not all_stable(), "a shelf to move")
    host.run_until(all_stable, "every shelf to be stable")
    return readings[-1]


def test_person_actions_match_board(tmp_path: Path) -> None:
    ground_truth_file = tmp_path / "truth.jsonl"
    with (
        CabinetProcess([*ARGS, "--ground-truth", str(ground_truth_file)]) as cabinet,
        HostProbe(cabinet.tty, BAUD) as host,
        ControlClient(cabinet.control) as control,
    ):
        host.handshake()
        host.run_until(
            lambda: all(
                shelf.status == ShelfStatus.STABLE
                for shelf in host.call(ReadWeights(), WeightsReply).shelves
            ),
            "the stability windows to fill",
        )
        before = host.call(ReadWeights(), WeightsReply)
        host.call(Unlock(0, 1500, 4242), UnlockReply)

        control.request("open_door", door=0, actor="student-9")
        taken = control.request("take", shelf=0, product=TEA, count=3, actor="student-9")
        returned = control.request("put", shelf=1, product=TEA, count=1, actor="student-9")
        after = read_stable_weights(host)
        control.request("close_door", door=0, actor="student-9")
        opened = host.wait_event(DoorOpened)
        closed = host.wait_event(DoorClosed)

        assert opened.token == 4242
        assert closed.door == 0
        assert len(taken["weights_mg"]) == 3
        assert returned["weights_mg"] == taken["weights_mg"][-1:]
        # Window means of two readings differ by noise under 3 g (six standard deviations).
        shelf0_change = after.shelves[0].weight_mg - before.shelves[0].weight_mg
        shelf1_change = after.shelves[1].weight_mg - before.shelves[1].weight_mg
        assert shelf0_change == pytest.approx(-sum(taken["weights_mg"]), abs=3_000)
        assert shelf1_change == pytest.approx(sum(returned["weights_mg"]), abs=3_000)

        held = control.request("held_items", actor="student-9")["items"]
        assert [item["weight_mg"] for item in held] == taken["weights_mg"][:2]
        records = control.request("ground_truth")["records"]

    student_records = [record for record in records if record["actor"] == "student-9"]
    assert [record["action"] for record in student_records] == [
        "open_door",
        "take",
        "put",
        "close_door",
    ]
    put = student_records[2]
    assert put["shelf"] == 1
    assert put["misplaced"] is True
    assert put["weights_mg"] == returned["weights_mg"]
    # The file contains the same records, one JSON object per line.
    lines = ground_truth_file.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records


def test_ground_truth_since_seq() -> None:
    with CabinetProcess(ARGS) as cabinet, ControlClient(cabinet.control) as control:
        first = control.request("ground_truth")["records"]
        control.request("force_door", door=1, actor="intruder")

        newer = control.request("ground_truth", since_seq=first[-1]["seq"])["records"]

    # The initial stock of each shelf is recorded with every pack's weight.
    assert [record["action"] for record in first] == ["stock"] * 4
    assert all(len(record["weights_mg"]) == record["count"] for record in first)
    assert len(newer) == 1
    assert newer[0]["action"] == "force_door"
    assert newer[0]["door"] == 1


def test_set_stock_adds_new_product() -> None:
    with CabinetProcess(ARGS) as cabinet, ControlClient(cabinet.control) as control:
        result = control.request(
            "set_stock",
            shelf=3,
            product="yuexi-bamboo-shoots-500g",
            count=4,
            name="岳西笋干 500 g",
            unit_weight_g=500,
            spread=0.02,
        )
        items = control.request("shelf_items", shelf=3)["items"]
        status = control.request("status")

    assert len(result["added"]) == 4
    shoots = [item for item in items if item["product"] == "yuexi-bamboo-shoots-500g"]
    assert len(shoots) == 4
    for item in shoots:
        assert item["weight_mg"] == pytest.approx(500_000, abs=30_000)
    assert status["shelves"][3]["items"]["yuexi-bamboo-shoots-500g"] == 4


def test_student_visit_through_socket() -> None:
    with (
        CabinetProcess(ARGS) as cabinet,
        HostProbe(cabinet.tty, BAUD) as host,
        ControlClient(cabinet.control) as control,
    ):
        host.call(Unlock(1, 1000, 99), UnlockReply)

        result = control.request(
            "student_visit",
            door=1,
            actor="student-x",
            seed=3,
            take_nothing_p=0.0,
            leave_open_p=0.0,
            pause_s=[0.01, 0.02],
        )
        opened = host.wait_event(DoorOpened)
        closed = host.wait_event(DoorClosed)
        records = control.request("ground_truth")["records"]

    assert opened.token == 99
    assert closed.door == 1
    assert result["taken"]
    takes = [r for r in records if r["actor"] == "student-x" and r["action"] == "take"]
    taken_weights = [weight for record in takes for weight in record["weights_mg"]]
    assert taken_weights == [item["weight_mg"] for item in result["taken"]]


@pytest.fixture(scope="module")
def idle_cabinet() -> Iterator[CabinetProcess]:
    """A cabinet shared by tests whose requests are all rejected, so none changes its state."""
    with CabinetProcess(ARGS) as cabinet:
        yield cabinet


@pytest.mark.parametrize(
    ("command", "fields", "message"),
    [
        pytest.param("fly", {}, "unknown command 'fly'", id="unknown command"),
        pytest.param("take", {"product": TEA}, "missing field 'shelf'", id="missing field"),
        pytest.param(
            "take",
            {"shelf": "0", "product": TEA},
            "field 'shelf' must be an integer",
            id="wrong type",
        ),
        pytest.param(
            "take", {"shelf": 0, "product": TEA}, "door 0, which is closed", id="door closed"
        ),
        pytest.param("open_door", {"door": 0}, "door 0 is locked", id="door locked"),
        pytest.param("open_door", {"door": 5}, "door 5 does not exist", id="no such door"),
        pytest.param("fault", {"fault": "melt=1"}, "unknown fault 'melt'", id="unknown fault"),
        pytest.param(
            "fault", {"fault": "jammed-lock=7"}, "door 7 does not exist", id="fault on no door"
        ),
        pytest.param(
            "clear_fault", {"fault": "drop=0.5"}, "setting it to 0", id="clear link fault"
        ),
    ],
)
def test_invalid_request_rejected(
    idle_cabinet: CabinetProcess, command: str, fields: dict[str, object], message: str
) -> None:
    with ControlClient(idle_cabinet.control) as control:
        with pytest.raises(ControlError) as error:
            control.request(command, **fields)

        assert message in str(error.value)
        # The connection stays usable after an error.
        assert control.request("ping") == {}


def test_malformed_json_rejected(idle_cabinet: CabinetProcess) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(idle_cabinet.control)
        stream = client.makefile("rwb")
        stream.write(b'{"command": "ping"\n[1, 2]\n{"id": 5, "command": "ping"}\n')
        stream.flush()
        responses = [json.loads(stream.readline()) for _ in range(3)]

    assert responses[0]["ok"] is False
    assert "invalid JSON" in responses[0]["error"]
    assert responses[1] == {"ok": False, "error": "a request must be a JSON object"}
    assert responses[2] == {"id": 5, "ok": True, "result": {}}
