"""Scenario files: parsing, checks, the packaged example, and timed actions."""

import importlib.resources
import tomllib
from pathlib import Path

import pytest

from simulator.cabinet import Cabinet
from simulator.clock import ManualClock
from simulator.faults import FaultSpec
from simulator.scenario import ScenarioError, ScenarioRunner, load_scenario, parse_scenario

EXAMPLE = "scenarios/anhui_campus.toml"


def example_path() -> Path:
    resource = importlib.resources.files("simulator").joinpath(EXAMPLE)
    assert resource.is_file()
    return Path(str(resource))


def test_example_scenario_loads() -> None:
    scenario = load_scenario(example_path())
    config = scenario.config

    assert config.doors == 2
    assert config.shelves == 4
    assert config.seed == 2024
    assert config.firmware_version == (1, 2, 0)
    assert config.scale.settle_s == 1.5
    products = {stock.product.name for shelf in config.shelf_specs for stock in shelf.stock}
    assert "金寨绿茶 250 g" in products
    assert "砀山梨片 80 g" in products
    assert "岳西笋干 200 g" in products
    assert [shelf.door for shelf in config.shelf_specs] == [0, 0, 1, 1]
    assert [action.at_s for action in scenario.actions] == [30.0, 60.0, 90.0]


def test_example_scenario_builds_cabinet() -> None:
    scenario = load_scenario(example_path())

    cabinet = Cabinet(scenario.config, ManualClock())

    tea = [item for item in cabinet.shelf_items(0) if item.product_id == "jinzhai-green-tea-250g"]
    assert len(tea) == 8
    # Spread 0.03 cut at 3 sigma: every pack within 9 % of 250 g.
    assert all(227_500 <= item.weight_mg <= 272_500 for item in tea)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[cabinet]\ndoorz = 2\n", "unknown keys ['doorz']", id="cabinet key"),
        pytest.param("[scale]\nnoise = 1\n", "unknown keys ['noise']", id="scale key"),
        pytest.param("[[shelves]]\ncapacity_g = 5\n", "missing key 'door'", id="shelf door"),
        pytest.param(
            '[[shelves]]\ndoor = 0\n[[shelves.products]]\nid = "x"\nstock = 1\n',
            "missing key 'unit_weight_g'",
            id="product weight",
        ),
        pytest.param("[faults]\nmelt = 1\n", "unknown fault 'melt'", id="fault name"),
        pytest.param("[faults]\ndrop = 2\n", "probability 2.0 must be in 0..1", id="fault value"),
        pytest.param(
            '[[actions]]\nat_s = 1\naction = "dance"\n', "unknown action 'dance'", id="action"
        ),
        pytest.param('[[actions]]\naction = "ping"\n', "missing key 'at_s'", id="action time"),
        pytest.param("[scale]\nsettle_s = 0\n", "settle time 0 s must be > 0", id="settle"),
        pytest.param("[cabinet]\nbaud = 1200\n", "baud rate 1200 is not one of", id="baud"),
        pytest.param("[cabinet\n", "is not valid TOML", id="syntax"),
    ],
)
def test_invalid_scenario_rejected(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ScenarioError) as error:
        load_scenario(path)

    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_hardware_fault_accepts_list() -> None:
    scenario = parse_scenario(tomllib.loads("[faults]\njammed-lock = [0, 1]\ncorrupt = 0.01\n"))

    assert scenario.faults == (
        FaultSpec("jammed-lock", 0),
        FaultSpec("jammed-lock", 1),
        FaultSpec("corrupt", 0.01),
    )


def test_actions_run_at_their_time() -> None:
    scenario = parse_scenario(
        tomllib.loads(
            """
            [[actions]]
            at_s = 2.0
            action = "force_door"
            door = 1
            actor = "intruder"

            [[actions]]
            at_s = 1.0
            action = "fault"
            fault = "scale-stuck=0"

            [[actions]]
            at_s = 3.0
            action = "open_door"
            door = 0
            """
        )
    )
    clock = ManualClock(50.0)
    cabinet = Cabinet(scenario.config, clock)
    runner = ScenarioRunner(cabinet, scenario.actions, clock.now())

    assert runner.run_due() == []
    clock.advance(1.5)
    assert [response["ok"] for response in runner.run_due()] == [True]
    clock.advance(2.0)
    responses = runner.run_due()

    assert responses[0] == {"ok": True, "result": {}}
    # Door 0 was never unlocked, so the scenario's open_door fails and is reported.
    assert responses[1]["ok"] is False
    assert "door 0 is locked" in responses[1]["error"]
    assert runner.finished.is_set()
    records = cabinet.ground_truth.records()
    assert [(record.actor, record.action) for record in records[-2:]] == [
        ("scenario", "fault_on"),
        ("intruder", "force_door"),
    ]
    assert cabinet.board.doors[1].is_open
