"""The agent's stock and known packs: sessions, restarts, idle weighing and restocks.

The agent runs in this process without its serial link or broker: a session is
set up as the unlock left it, and the stable weights after it are handed in.
"""

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from agent_harness import KEY_HEX, SIM_SHELVES, planogram_command
from firmware_protocol.messages import ShelfReading, ShelfStatus
from kiosk_agent.agent import STATE_STOCK, KioskAgent
from kiosk_agent.config import AgentSettings
from kiosk_agent.contract import EventType, KioskEvent, SaleRecord, UnlockMode, parse_payload
from kiosk_agent.outbox import MessageKind, Outbox
from kiosk_agent.session import SessionState

KIOSK_ID = "AH-10357-0902"
TEA = SIM_SHELVES[0][0]
CRISPS = SIM_SHELVES[1][0]
# Every shelf of the planogram starts at its capacity.
CAPACITY = 20
# Shelf weights with every shelf full, in milligrams.
FULL = {shelf: CAPACITY * grams * 1000 for shelf, (_, _, grams, _) in enumerate(SIM_SHELVES)}


def _settings(data_dir: Path) -> AgentSettings:
    return AgentSettings(
        kiosk_id=KIOSK_ID,
        hmac_key=SecretStr(KEY_HEX),
        serial_port="/dev/null",
        data_dir=data_dir,
        development=True,
    )


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[KioskAgent]:
    agent = KioskAgent(_settings(tmp_path), agent_version="test")
    agent._apply_planogram(planogram_command(KIOSK_ID))
    yield agent
    _close(agent)


def _close(agent: KioskAgent) -> None:
    agent.outbox.close()
    agent.nonces.close()


def _run_session(
    agent: KioskAgent,
    before: dict[int, int],
    after: dict[int, int],
    mode: UnlockMode = UnlockMode.PURCHASE,
) -> None:
    """Run a session from the closed door on: the agent settles on ``after`` and records it."""
    session = agent.session
    session.session_id = str(uuid.uuid4())
    session.command_id = str(uuid.uuid4())
    session.mode = mode.value
    session.state = SessionState.SETTLING
    session.opened_at = session.closed_at = datetime.now(UTC)
    session.planogram_version = agent._planogram().version
    # What the agent records when the unlock is authorized.
    session.baseline_mg = dict(before)
    session.stock = {shelf: dict(products) for shelf, products in agent.stock.items()}
    session.known_packs = {shelf: list(packs) for shelf, packs in agent.known_packs.items()}

    async def stable_weights(timeout_s: float, session_id: str | None = None) -> dict[int, int]:
        return dict(after)

    agent._stable_weights = stable_weights  # type: ignore[method-assign]
    asyncio.run(agent._settle())
    assert agent.session.state is SessionState.IDLE


def _sales(agent: KioskAgent) -> list[SaleRecord]:
    due = agent.outbox.due(datetime(2100, 1, 1, tzinfo=UTC), 100)
    return [parse_payload(SaleRecord, m.payload) for m in due if m.kind is MessageKind.SALE]


def _restock_events(agent: KioskAgent) -> list[KioskEvent]:
    due = agent.outbox.due(datetime(2100, 1, 1, tzinfo=UTC), 100)
    events = [parse_payload(KioskEvent, m.payload) for m in due if m.kind is MessageKind.EVENT]
    return [event for event in events if event.type is EventType.RESTOCK]


def _move_tea_to_crisps_shelf(agent: KioskAgent) -> None:
    """Run a visit that takes a 255 g tea from its shelf and puts it among the crisps."""
    after = dict(FULL)
    after[0] -= 254_600
    after[1] += 255_400
    _run_session(agent, FULL, after)


def test_misplaced_pack_is_measured_and_counted(agent: KioskAgent) -> None:
    _move_tea_to_crisps_shelf(agent)

    assert agent.stock[0] == {TEA: CAPACITY - 1}
    assert agent.stock[1] == {CRISPS: CAPACITY, TEA: 1}
    (pack,) = agent.known_packs[1]
    assert pack.product_id == TEA
    assert 254_500 <= pack.weight_mg <= 255_500
    assert pack.sigma_mg < 2_000
    assert _sales(agent)[-1].lines == []


def test_known_packs_survive_restart(agent: KioskAgent, tmp_path: Path) -> None:
    _move_tea_to_crisps_shelf(agent)
    stock, known = agent.stock, agent.known_packs
    _close(agent)

    restarted = KioskAgent(_settings(tmp_path), agent_version="test")
    try:
        assert restarted.stock == stock
        assert restarted.known_packs == known
    finally:
        _close(restarted)


def test_take_of_known_pack_is_charged(agent: KioskAgent) -> None:
    _move_tea_to_crisps_shelf(agent)
    (pack,) = agent.known_packs[1]
    before = dict(FULL)
    before[0] -= 254_600
    before[1] += 255_400
    after = dict(before)
    # Three crisps would weigh 240 g, give or take 4 g: as a plain 250 g tea,
    # the pack would be too close to them to charge.
    after[1] -= pack.weight_mg - 600

    _run_session(agent, before, after)

    sale = _sales(agent)[-1]
    assert sale.review.needed is False
    assert [(line.product_id, line.quantity, line.shelf) for line in sale.lines] == [(TEA, 1, 1)]
    assert agent.stock[1] == {CRISPS: CAPACITY, TEA: 0}
    assert agent.known_packs == {}


def test_old_stock_state_loads(tmp_path: Path) -> None:
    # The state an agent wrote before it kept known packs: stock only.
    settings = _settings(tmp_path)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    outbox = Outbox(settings.outbox_path)
    with outbox.transaction() as transaction:
        transaction.put_state(STATE_STOCK, json.dumps({"0": {TEA: 5}, "1": {CRISPS: 7, TEA: 1}}))
    outbox.close()

    agent = KioskAgent(settings, agent_version="test")
    try:
        assert agent.stock == {0: {TEA: 5}, 1: {CRISPS: 7, TEA: 1}}
        assert agent.known_packs == {}
    finally:
        _close(agent)


def _stable_reading(agent: KioskAgent, shelf: int, weight_mg: int) -> list[ShelfReading]:
    agent.readings[shelf] = ShelfReading(shelf, ShelfStatus.STABLE, weight_mg)
    return list(agent.readings.values())


def test_idle_weighing_keeps_misplaced_pack(agent: KioskAgent) -> None:
    _move_tea_to_crisps_shelf(agent)
    known = agent.known_packs
    # The tea weighs about three crisps: counted as crisps, it would vanish.
    weight = CAPACITY * 80_000 + 255_000 + 1_500

    agent._estimate_stock(_stable_reading(agent, 1, weight))

    assert agent.stock[1] == {CRISPS: CAPACITY, TEA: 1}
    assert agent.known_packs == known
    assert _restock_events(agent) == []


def test_idle_weight_change_forgets_measured_weight(agent: KioskAgent) -> None:
    _move_tea_to_crisps_shelf(agent)
    # Someone with a key added two crisps while no session ran.
    weight = (CAPACITY + 2) * 80_000 + 255_000

    agent._estimate_stock(_stable_reading(agent, 1, weight))

    assert agent.stock[1] == {CRISPS: CAPACITY + 2, TEA: 1}
    # They may have taken the tea too, so its weight must not be matched any more.
    assert agent.known_packs == {}
    (event,) = _restock_events(agent)
    assert [(line.shelf, line.product_id, line.quantity) for line in event.stock or []] == [
        (1, CRISPS, CAPACITY + 2)
    ]


def test_review_session_counts_past_misplaced_pack(agent: KioskAgent) -> None:
    _move_tea_to_crisps_shelf(agent)
    agent.known_packs = {}
    before = dict(FULL)
    before[0] -= 254_600
    before[1] += 255_400
    after = dict(before)
    # A plain tea or three crisps: the session goes to review.
    after[1] -= 246_000

    _run_session(agent, before, after)

    assert _sales(agent)[-1].review.needed
    # The tea stays counted, at its label weight, and the crisps are what
    # the rest of the weight holds.
    assert agent.stock[1] == {CRISPS: round((after[1] - 250_000) / 80_000), TEA: 1}


def test_restock_moves_misplaced_packs_home(agent: KioskAgent) -> None:
    _move_tea_to_crisps_shelf(agent)
    before = dict(FULL)
    before[0] -= 254_600
    before[1] += 255_400
    # The operator puts the tea back on its shelf and fills up the crisps.
    after = dict(FULL)
    after[1] = (CAPACITY + 4) * 80_000

    _run_session(agent, before, after, mode=UnlockMode.RESTOCK)

    assert agent.stock[0] == {TEA: CAPACITY}
    assert agent.stock[1] == {CRISPS: CAPACITY + 4}
    assert agent.known_packs == {}


@pytest.mark.parametrize(
    ("doors", "warned"),
    [
        pytest.param([0, 0, 1, 1], True, id="tea-and-crisps-share-a-door"),
        pytest.param([0, 1, 1, 0], False, id="tea-and-crisps-apart"),
    ],
)
def test_planogram_misplaced_packs_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, doors: list[int], warned: bool
) -> None:
    agent = KioskAgent(_settings(tmp_path), agent_version="test")
    command = planogram_command(KIOSK_ID)
    shelves = [
        shelf.model_copy(update={"door": door})
        for shelf, door in zip(command.shelves, doors, strict=True)
    ]
    try:
        agent._apply_planogram(command.model_copy(update={"shelves": shelves}))

        assert agent.planogram is not None
        assert [shelf.door for shelf in agent.planogram.shelves] == doors
    finally:
        _close(agent)
    messages = [r.getMessage() for r in caplog.records if "misplaced packs" in r.getMessage()]
    assert len(messages) == int(warned), messages
    if warned:
        assert f"a {TEA} pack put there from shelf 0" in messages[0]
