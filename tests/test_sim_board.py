"""The virtual board's firmware, driven in-process by firmware_protocol's HostLink.

A ``Bench`` wires a ``Cabinet`` on a manual clock to a ``HostLink`` with no
serial line between them, so every exchange is instant and every time is exact.
"""

import random
from collections import defaultdict

import pytest

from firmware_protocol.codec import Packet, decode_packet, encode_packet
from firmware_protocol.crc import crc8
from firmware_protocol.decoder import FrameDecoder
from firmware_protocol.frame import ADDRESS_ANY
from firmware_protocol.link import (
    EventReceived,
    HostLink,
    LinkTiming,
    Outcome,
    Rejected,
    ReplyReceived,
)
from firmware_protocol.messages import (
    ALL_DOORS,
    AckEvent,
    BoardStarted,
    Calibrate,
    CalibrateReply,
    Capability,
    Diagnostics,
    DiagnosticsReply,
    DoorClosed,
    DoorForced,
    DoorOpened,
    DoorPosition,
    DoorStateReply,
    ErrorCode,
    Event,
    GetDoorState,
    Hello,
    HelloReply,
    LockFault,
    LockFaultCode,
    LockState,
    ReadWeights,
    Reply,
    Request,
    ScaleFault,
    ScaleFaultCode,
    ShelfStatus,
    Tare,
    TareReply,
    Unlock,
    UnlockReply,
    WeightsReply,
)
from simulator.cabinet import Cabinet
from simulator.clock import ManualClock
from simulator.config import CabinetConfig, Product, ScaleSettings, ShelfSpec, Stock
from simulator.faults import parse_fault
from simulator.person import Person
from simulator.students import StudentBehaviour, visit

TEA = Product("jinzhai-green-tea-250g", "金寨绿茶 250 g", 250.0)
CRISPS = Product("dangshan-pear-crisps-80g", "砀山梨片 80 g", 80.0, spread=0.05)
SHOOTS = Product("yuexi-bamboo-shoots-200g", "岳西笋干 200 g", 200.0)
CAKE = Product("huangshan-sesame-cake-150g", "黄山烧饼 150 g", 150.0)

VISITS = 20
FAST_SCALE = ScaleSettings(settle_s=0.3, hand_contact_s=0.1)
# Time after a touch until the reading is stable: contact, settle, then a full window.
STABLE_AFTER_S = 0.1 + 0.3 + FAST_SCALE.stable_window_s + 0.1


def small_config(**overrides: object) -> CabinetConfig:
    shelves = (
        ShelfSpec(door=0, stock=(Stock(TEA, 8), Stock(CRISPS, 6))),
        ShelfSpec(door=0, stock=(Stock(SHOOTS, 10),)),
        ShelfSpec(door=1, stock=(Stock(CAKE, 10),)),
    )
    settings: dict[str, object] = {
        "doors": 2,
        "shelves": 3,
        "seed": 42,
        "scale": FAST_SCALE,
        "shelf_specs": shelves,
    }
    settings.update(overrides)
    return CabinetConfig(**settings)  # type: ignore[arg-type]


class Bench:
    """A cabinet on a manual clock, connected to a ``HostLink`` in the same thread."""

    def __init__(self, config: CabinetConfig | None = None) -> None:
        self.clock = ManualClock(1000.0)
        self.cabinet = Cabinet(config or small_config(), self.clock)
        self.board = self.cabinet.board
        self.host = HostLink(timing=LinkTiming(self.cabinet.config.baud))
        self.events: list[Event] = []
        self.outcomes: dict[int, Outcome] = {}
        self.cabinet.start()
        self.exchange()

    def _collect(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, EventReceived):
                self.events.append(outcome.event)
            elif hasattr(outcome, "request_id"):
                self.outcomes[outcome.request_id] = outcome

    def exchange(self) -> None:
        """Move bytes both ways until neither side has anything to send."""
        for _ in range(1000):
            now = self.clock.now()
            to_board = self.host.data_to_send()
            if to_board:
                self.board.receive(to_board, now)
            self.board.update(now)
            to_host = self.board.data_to_send()
            if to_host:
                self._collect(self.host.receive(to_host, now))
            self._collect(self.host.poll(now))
            if not to_board and not to_host:
                return
        raise AssertionError("host and board kept exchanging bytes for 1000 rounds")

    def advance(self, seconds: float, step_s: float = 0.05) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            self.clock.advance(min(step_s, end - self.clock.now()))
            self.exchange()

    def request(self, request: Request) -> Outcome:
        request_id = self.host.submit(request, self.clock.now())
        self.exchange()
        return self.outcomes.pop(request_id)

    def reply(self, request: Request) -> Reply:
        outcome = self.request(request)
        assert isinstance(outcome, ReplyReceived), outcome
        return outcome.reply

    def rejection(self, request: Request) -> ErrorCode:
        outcome = self.request(request)
        assert isinstance(outcome, Rejected), outcome
        return outcome.code

    def take_events(self) -> list[Event]:
        events = self.events
        self.events = []
        return events


# Handshake and door requests.


def test_board_starts_with_board_started() -> None:
    bench = Bench()

    events = bench.take_events()

    assert len(events) == 1
    assert isinstance(events[0], BoardStarted)


def test_hello_reply_describes_board() -> None:
    bench = Bench(small_config(serial_number=0x12345678, firmware_version=(2, 3, 4)))

    reply = bench.reply(Hello(1))

    assert reply == HelloReply(
        protocol_version=1,
        firmware_major=2,
        firmware_minor=3,
        firmware_patch=4,
        serial_number=0x12345678,
        doors=2,
        shelves=3,
        capabilities=Capability.PUSH_EVENTS
        | Capability.CALIBRATION
        | Capability.TEMPERATURE
        | Capability.SUPPLY_MONITOR,
    )


def test_hello_version_zero_rejected() -> None:
    bench = Bench()

    assert bench.rejection(Hello(0)) is ErrorCode.UNSUPPORTED_VERSION


@pytest.mark.parametrize(
    ("door", "pulse_ms"),
    [(2, 500), (ALL_DOORS, 500), (0, 99), (0, 2001), (0, 0)],
    ids=["door past last", "door 0xFF", "pulse 99 ms", "pulse 2001 ms", "pulse 0 ms"],
)
def test_unlock_bad_argument_rejected(door: int, pulse_ms: int) -> None:
    bench = Bench()

    assert bench.rejection(Unlock(door, pulse_ms, 5)) is ErrorCode.BAD_ARGUMENT
    assert [unit.pulse_count for unit in bench.board.doors] == [0, 0]


@pytest.mark.parametrize("pulse_ms", [100, 2000])
def test_unlock_pulse_limits_accepted(pulse_ms: int) -> None:
    bench = Bench()

    assert bench.reply(Unlock(1, pulse_ms, 8)) == UnlockReply(1, 8)
    assert bench.board.doors[1].lock_state is LockState.RELEASED

    bench.advance(pulse_ms / 1000 - 0.01)
    assert bench.board.doors[1].lock_state is LockState.RELEASED
    bench.advance(0.02)
    assert bench.board.doors[1].lock_state is LockState.LOCKED


def test_unlock_during_pulse_is_busy() -> None:
    bench = Bench()
    bench.reply(Unlock(0, 1000, 11))

    assert bench.rejection(Unlock(0, 1000, 12)) is ErrorCode.BUSY

    state = bench.reply(GetDoorState(0))
    assert isinstance(state, DoorStateReply)
    # The rejected unlock never pulsed, so the door keeps the first token.
    assert state.doors[0].last_token == 11
    bench.advance(1.0)
    assert bench.reply(Unlock(0, 1000, 13)) == UnlockReply(0, 13)


def test_door_state_all_and_one() -> None:
    bench = Bench()
    bench.reply(Unlock(1, 500, 21))

    every = bench.reply(GetDoorState(ALL_DOORS))
    single = bench.reply(GetDoorState(1))

    assert isinstance(every, DoorStateReply)
    assert [status.door for status in every.doors] == [0, 1]
    assert every.doors[0].lock is LockState.LOCKED
    assert every.doors[1].lock is LockState.RELEASED
    assert isinstance(single, DoorStateReply)
    assert len(single.doors) == 1
    assert single.doors[0].last_token == 21
    assert single.doors[0].position is DoorPosition.CLOSED
    assert bench.rejection(GetDoorState(2)) is ErrorCode.BAD_ARGUMENT


# Door events.


def test_visit_reports_opened_and_closed() -> None:
    bench = Bench()
    bench.take_events()
    person = Person(bench.cabinet, "student-1")
    bench.reply(Unlock(0, 800, 0xCAFE))

    bench.advance(0.2)
    person.open_door(0)
    bench.exchange()
    bench.advance(3.0)
    person.close_door(0)
    bench.exchange()

    events = bench.take_events()
    assert len(events) == 2
    opened, closed = events
    assert isinstance(opened, DoorOpened)
    assert opened.door == 0
    assert opened.token == 0xCAFE
    assert isinstance(closed, DoorClosed)
    assert closed.open_ms == 3000
    assert closed.uptime_ms - opened.uptime_ms == 3000
    # Both were acknowledged, so nothing waits in the board's queue.
    assert bench.board.link.events_pending == 0
    assert bench.board.doors[0].lock_state is LockState.LOCKED


def test_forced_door_reports_forced() -> None:
    bench = Bench()
    bench.take_events()

    Person(bench.cabinet, "intruder").force_door(1)
    bench.exchange()

    events = bench.take_events()
    assert len(events) == 1
    assert isinstance(events[0], DoorForced)
    assert events[0].door == 1


def test_jammed_lock_reports_jam_and_fault_state() -> None:
    bench = Bench()
    bench.take_events()
    bench.cabinet.set_fault(parse_fault("jammed-lock=0"))

    assert bench.reply(Unlock(0, 500, 31)) == UnlockReply(0, 31)
    bench.advance(0.1)

    events = bench.take_events()
    assert len(events) == 1
    assert isinstance(events[0], LockFault)
    assert events[0].door == 0
    assert events[0].fault is LockFaultCode.JAMMED
    state = bench.reply(GetDoorState(0))
    assert isinstance(state, DoorStateReply)
    assert state.doors[0].lock is LockState.FAULT
    diagnostics = bench.reply(Diagnostics())
    assert isinstance(diagnostics, DiagnosticsReply)
    assert diagnostics.lock_faults == 1


# Weights, tare and calibration.


def test_read_weights_reports_stock() -> None:
    bench = Bench()
    bench.advance(1.0)

    reply = bench.reply(ReadWeights())

    assert isinstance(reply, WeightsReply)
    assert [reading.shelf for reading in reply.shelves] == [0, 1, 2]
    for reading, cell in zip(reply.shelves, bench.board.cells, strict=True):
        assert reading.status == ShelfStatus.STABLE
        # Window mean of 10 samples with 1 g noise: 5 sigma is 1.6 g.
        assert reading.weight_mg == pytest.approx(cell.load_mg, abs=2_000)


def test_tare_rejected_while_moving() -> None:
    bench = Bench()
    bench.advance(1.0)
    bench.reply(Unlock(0, 500, 1))
    person = Person(bench.cabinet, "student")
    person.open_door(0)
    person.take(1, SHOOTS.product_id)

    bench.advance(0.2)
    assert bench.rejection(Tare(1)) is ErrorCode.NOT_STABLE

    bench.advance(STABLE_AFTER_S)
    assert bench.reply(Tare(1)) == TareReply(1)
    weights = bench.reply(ReadWeights())
    assert isinstance(weights, WeightsReply)
    assert abs(weights.shelves[1].weight_mg) < 2_000


def test_tare_on_disconnected_shelf_is_hardware_fault() -> None:
    bench = Bench()
    bench.advance(1.0)
    bench.take_events()
    bench.cabinet.set_fault(parse_fault("scale-disconnected=2"))
    # The firmware notices the missing ADC data at its next sample, 50 ms later at most.
    bench.advance(0.06)

    assert bench.rejection(Tare(2)) is ErrorCode.HARDWARE_FAULT
    assert bench.rejection(Calibrate(2, 1_000_000)) is ErrorCode.HARDWARE_FAULT
    events = bench.take_events()
    assert len(events) == 1
    assert isinstance(events[0], ScaleFault)
    assert events[0].shelf == 2
    assert events[0].fault is ScaleFaultCode.DISCONNECTED
    weights = bench.reply(ReadWeights())
    assert isinstance(weights, WeightsReply)
    assert weights.shelves[2].status == ShelfStatus.FAULT


def test_tare_bad_shelf_rejected() -> None:
    bench = Bench()

    assert bench.rejection(Tare(3)) is ErrorCode.BAD_ARGUMENT


def test_calibrate_reports_gain() -> None:
    scale = ScaleSettings(settle_s=0.3, hand_contact_s=0.1, gain_error=0.01)
    bench = Bench(small_config(scale=scale))
    bench.advance(1.0)
    load_mg = bench.board.cells[1].load_mg

    reply = bench.reply(Calibrate(1, load_mg))

    assert isinstance(reply, CalibrateReply)
    assert reply.gain_ppm == pytest.approx(1_000_000 / 1.01, abs=400)
    bench.advance(0.5)
    weights = bench.reply(ReadWeights())
    assert isinstance(weights, WeightsReply)
    assert weights.shelves[1].weight_mg == pytest.approx(load_mg, abs=2_000)


def test_calibrate_without_load_rejected() -> None:
    bench = Bench()
    bench.advance(1.0)

    assert bench.rejection(Calibrate(0, 5_000)) is ErrorCode.BAD_ARGUMENT


def test_overload_sets_flag_and_event() -> None:
    bench = Bench()
    bench.take_events()
    bench.reply(Unlock(1, 500, 2))
    person = Person(bench.cabinet, "student")
    person.open_door(1)

    person.place_object(2, 25_000)
    bench.advance(STABLE_AFTER_S)

    faults = [event for event in bench.take_events() if isinstance(event, ScaleFault)]
    assert [(fault.shelf, fault.fault) for fault in faults] == [(2, ScaleFaultCode.OVERLOAD)]
    weights = bench.reply(ReadWeights())
    assert isinstance(weights, WeightsReply)
    assert weights.shelves[2].status & ShelfStatus.OVERLOAD


# Link rules and counters.


def test_retransmitted_unlock_pulses_once() -> None:
    bench = Bench()
    wire = encode_packet(Packet(ADDRESS_ANY, 17, Unlock(0, 500, 0xBEEF)))
    now = bench.clock.now()

    bench.board.receive(wire, now)
    first_reply = bench.board.data_to_send()
    bench.board.receive(wire, now + 0.05)
    second_reply = bench.board.data_to_send()

    assert first_reply == second_reply
    assert bench.board.doors[0].pulse_count == 1
    assert bench.board.link.stats.repeated_requests == 1
    assert bench.board.doors[0].last_token == 0xBEEF


def test_ack_after_idle_flush_pushes_next_event() -> None:
    clock = ManualClock(0.0)
    cabinet = Cabinet(small_config(), clock)
    cabinet.start()
    board = cabinet.board
    board.receive(encode_packet(Packet(ADDRESS_ANY, 1, AckEvent(0))), clock.now())
    board.data_to_send()
    intruder = Person(cabinet, "intruder")
    intruder.force_door(0)
    intruder.force_door(1)
    first = decode_frames(board.data_to_send())
    assert [type(packet.message) for packet in first] == [DoorForced]

    # A header that announces 200 payload bytes hides the acknowledgement behind it
    # until the idle flush drops the header.
    ack = encode_packet(Packet(ADDRESS_ANY, 2, AckEvent(first[0].seq)))
    header = bytearray(ack[:8])
    header[6] = 200
    header[7] = crc8(bytes(header[2:7]))
    board.receive(bytes(header) + ack, clock.now())
    board.flush_partial(clock.now() + 0.01)
    board.data_to_send()
    clock.advance(1.0)
    cabinet.update()

    pushed = decode_frames(board.data_to_send())
    forced_doors = [
        packet.message.door for packet in pushed if isinstance(packet.message, DoorForced)
    ]
    assert forced_doors[:1] == [1]


def decode_frames(data: bytes) -> list[Packet]:
    return [decode_packet(frame) for frame in FrameDecoder().feed(data)]


def test_diagnostics_counts_link_errors() -> None:
    bench = Bench()
    good = encode_packet(Packet(ADDRESS_ANY, 40, GetDoorState(0)))
    bad_crc = good[:-1] + bytes((good[-1] ^ 0xFF,))
    bad_header = good[:7] + bytes((good[7] ^ 0xFF,)) + good[8:]
    now = bench.clock.now()
    bench.board.receive(bad_crc, now)
    bench.board.receive(bad_header, now)
    bench.board.receive(good, now)
    bench.board.receive(good, now)
    bench.board.data_to_send()
    bench.advance(2.5)

    reply = bench.reply(Diagnostics())

    assert isinstance(reply, DiagnosticsReply)
    assert reply.rx_crc_errors == 1
    assert reply.rx_header_errors == 1
    assert reply.repeated_requests == 1
    assert reply.uptime_s == 2
    assert reply.supply_mv == pytest.approx(12_000, abs=50)
    assert reply.temperature_dc == pytest.approx(240, abs=6)
    assert reply.events_pending == 0


# Ground truth.


def test_ground_truth_records_actions() -> None:
    bench = Bench()
    person = Person(bench.cabinet, "student-7")
    bench.reply(Unlock(0, 500, 3))
    person.open_door(0)
    taken = person.take(0, TEA.product_id, 2)
    person.put(1, TEA.product_id, 1)
    person.close_door(0)

    records = [
        record for record in bench.cabinet.ground_truth.records() if record.actor == "student-7"
    ]

    assert [record.action for record in records] == ["open_door", "take", "put", "close_door"]
    take, put = records[1], records[2]
    assert take.shelf == 0
    assert take.count == 2
    assert take.weights_mg == tuple(item.weight_mg for item in taken)
    assert put.shelf == 1
    assert put.weights_mg == (taken[-1].weight_mg,)
    assert put.misplaced is True
    assert [entry.item for entry in person.held_items] == [taken[0]]


def test_student_visits_match_reported_weights() -> None:
    bench = Bench()
    behaviour = StudentBehaviour(
        take_nothing_p=0.15,
        put_back_p=0.4,
        wrong_shelf_p=0.5,
        leave_open_p=0.25,
        leave_open_s=(1.0, 3.0),
        pause_s=(0.2, 0.6),
    )
    rng = random.Random(2024)
    bench.advance(1.0)
    previous = bench.reply(ReadWeights())
    assert isinstance(previous, WeightsReply)
    seen = len(bench.cabinet.ground_truth.records())
    visits = 0
    results = []

    for number in range(VISITS):
        door = number % 2
        bench.reply(Unlock(door, 1000, 100 + number))
        result = visit(bench.cabinet, door, f"student-{number}", rng, behaviour)
        results.append(result)
        visits += 1
        bench.advance(STABLE_AFTER_S)
        current = bench.reply(ReadWeights())
        assert isinstance(current, WeightsReply)

        # Net change of each shelf according to the ground truth of this visit.
        expected: dict[int, int] = defaultdict(int)
        records = bench.cabinet.ground_truth.records(seen)
        seen += len(records)
        for record in records:
            assert record.actor == result.actor
            if record.action == "take":
                assert record.shelf is not None
                expected[record.shelf] -= sum(record.weights_mg)
            elif record.action == "put":
                assert record.shelf is not None
                expected[record.shelf] += sum(record.weights_mg)

        for before, after in zip(previous.shelves, current.shelves, strict=True):
            assert after.status == ShelfStatus.STABLE
            # Two window means with 0.32 g noise each, plus at most 0.1 g of creep
            # over a visit: 3 g is more than six standard deviations.
            reported = after.weight_mg - before.weight_mg
            assert reported == pytest.approx(expected[after.shelf], abs=3_000), (
                f"visit {number}, shelf {after.shelf}"
            )
        previous = current

    # The seed gives visits of every kind, so each branch of the behaviour was compared.
    assert visits == VISITS
    assert any(not result.taken for result in results)
    assert any(result.left_open_s is not None for result in results)
    misplaced = [
        record
        for record in bench.cabinet.ground_truth.records()
        if record.action == "put" and record.misplaced
    ]
    assert misplaced
