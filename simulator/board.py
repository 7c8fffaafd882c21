"""The virtual board's firmware: request handling and event reporting, with no I/O.

``VirtualBoard`` owns the door and scale models and a ``firmware_protocol``
``BoardLink``, which applies every link rule (address filter, reply cache for a
retransmitted request, event queue). The owner feeds it bytes and the time and
writes out what ``data_to_send`` returns. ``next_deadline`` returns when to call
``update`` again. Nothing here is thread-safe, so ``Cabinet`` adds the lock.
"""

import logging
import math
import random

from firmware_protocol.board import BoardLink
from firmware_protocol.messages import (
    ALL_DOORS,
    BoardStarted,
    Calibrate,
    CalibrateReply,
    Capability,
    Diagnostics,
    DiagnosticsReply,
    DoorClosed,
    DoorForced,
    DoorOpened,
    DoorStateReply,
    DoorStatus,
    ErrorCode,
    ErrorReply,
    Event,
    GetDoorState,
    Hello,
    HelloReply,
    LockFault,
    ReadWeights,
    Reply,
    Request,
    ResetCause,
    ScaleFault,
    ScaleFaultCode,
    ShelfReading,
    Tare,
    TareReply,
    Unlock,
    UnlockReply,
    WeightsReply,
)
from simulator.config import CabinetConfig
from simulator.doors import (
    DoorChange,
    DoorClosedChange,
    DoorForcedChange,
    DoorOpenedChange,
    DoorUnit,
    LockBusyError,
    LockFaultChange,
)
from simulator.faults import DOOR_FAULTS, SHELF_FAULTS, FaultSpec
from simulator.scale import LoadCell, ScaleChannel, ScaleRejectedError

logger = logging.getLogger(__name__)

SIMULATED_PROTOCOL_VERSION = 1
CAPABILITIES = (
    Capability.PUSH_EVENTS
    | Capability.CALIBRATION
    | Capability.TEMPERATURE
    | Capability.SUPPLY_MONITOR
)
MIN_PULSE_MS = 100
MAX_PULSE_MS = 2000
UPTIME_MS_MODULO = 2**32
# Amplitude of the slow wander of the supply voltage and board temperature readings.
SUPPLY_RIPPLE_MV = 40
TEMPERATURE_WANDER_DC = 5


def _clamp(value: int, maximum: int) -> int:
    return min(max(value, 0), maximum)


class VirtualBoard:
    """Firmware of one cabinet board; see the module docstring."""

    def __init__(self, config: CabinetConfig, start_time: float) -> None:
        config.validate()
        self.config = config
        self.start_time = start_time
        self.doors = [DoorUnit(index) for index in range(config.doors)]
        self.cells: list[LoadCell] = []
        self.channels: list[ScaleChannel] = []
        for index, shelf in enumerate(config.resolved_shelves()):
            rng = random.Random(f"{config.seed}:load-cell:{index}")
            cell = LoadCell(config.scale, rng, start_time, round(shelf.capacity_g * 1000))
            self.cells.append(cell)
            self.channels.append(ScaleChannel(cell, config.scale, start_time))
        self.link = BoardLink(address=config.address, handler=self._handle_request)
        self.lock_fault_count = 0
        self.scale_fault_count = 0
        self._now = start_time
        self._started = False
        # Events of faults switched on before start, posted after BoardStarted.
        self._early_events: list[Event] = []

    # Time and I/O.

    def uptime_ms(self, at: float) -> int:
        return int((at - self.start_time) * 1000) % UPTIME_MS_MODULO

    def start(self, now: float) -> None:
        """Post BoardStarted, the first event after a reset."""
        if self._started:
            return
        self._started = True
        self._post(BoardStarted(self.uptime_ms(now), ResetCause.POWER_ON), now)
        for event in self._early_events:
            self._post(event, now)
        self._early_events.clear()
        self.update(now)
        logger.info(
            "board %#010x started at address %d with %d doors and %d shelves",
            self.config.board_serial_number,
            self.config.address,
            self.config.doors,
            self.config.shelves,
        )

    def receive(self, data: bytes, now: float) -> None:
        """Handle bytes that finished arriving by ``now``."""
        self.update(now)
        self.link.receive(data, now)

    def flush_partial(self, now: float) -> None:
        """Drop a partial frame because the line was idle for the inter-frame gap."""
        self.update(now)
        self.link.flush_partial(now)

    def update(self, now: float) -> None:
        """Advance every model to ``now``, post the events that result, resend overdue events."""
        self._now = max(self._now, now)
        now = self._now
        for door in self.doors:
            self.report_door_changes(door.update(now))
        for index, channel in enumerate(self.channels):
            for fault in channel.advance(now):
                self._post_scale_fault(index, fault, now)
        self.link.poll(now)

    def next_deadline(self) -> float | None:
        deadlines = [self.link.next_deadline()]
        deadlines += [door.next_deadline() for door in self.doors]
        deadlines += [channel.next_deadline() for channel in self.channels]
        return min((t for t in deadlines if t is not None), default=None)

    def data_to_send(self) -> bytes:
        return self.link.data_to_send()

    # Hardware changes reported as events.

    def report_door_changes(self, changes: list[DoorChange]) -> None:
        for change in changes:
            uptime = self.uptime_ms(change.at)
            event: Event
            match change:
                case DoorOpenedChange(door=door, token=token):
                    event = DoorOpened(uptime, door, token)
                case DoorClosedChange(door=door, open_s=open_s):
                    event = DoorClosed(uptime, door, _clamp(round(open_s * 1000), 0xFFFFFFFF))
                case DoorForcedChange(door=door):
                    event = DoorForced(uptime, door)
                    logger.warning("door %d forced open", door)
                case LockFaultChange(door=door, fault=fault):
                    event = LockFault(uptime, door, fault)
                    self.lock_fault_count += 1
                    logger.warning("door %d lock fault %s", door, fault.name)
            self._post(event, self._now)

    def _post_scale_fault(self, shelf: int, fault: ScaleFaultCode, now: float) -> None:
        self.scale_fault_count += 1
        logger.warning("shelf %d scale fault %s", shelf, fault.name)
        self._post(ScaleFault(self.uptime_ms(now), shelf, fault), now)

    def _post(self, event: Event, now: float) -> None:
        if not self._started and not isinstance(event, BoardStarted):
            self._early_events.append(event)
            return
        if not self.link.post_event(event, now):
            logger.warning("event queue full, dropped %s", type(event).__name__)

    # Hardware fault switches.

    def set_hardware_fault(self, spec: FaultSpec, active: bool, now: float) -> None:
        """Switch a door or shelf fault on or off; raises ``ValueError`` on a bad index."""
        self.update(now)
        if spec.name in DOOR_FAULTS:
            if not 0 <= spec.index < len(self.doors):
                raise ValueError(f"fault {spec}: door {spec.index} does not exist")
            door = self.doors[spec.index]
            if spec.name == "jammed-lock":
                door.set_jammed(active)
            else:
                door.set_latch_fails(active)
        elif spec.name in SHELF_FAULTS:
            if not 0 <= spec.index < len(self.cells):
                raise ValueError(f"fault {spec}: shelf {spec.index} does not exist")
            cell = self.cells[spec.index]
            if spec.name == "scale-disconnected":
                cell.set_connected(not active)
            else:
                cell.set_stuck(active, now)
        else:
            raise ValueError(f"{spec.name} is not a hardware fault")
        logger.info("hardware fault %s %s", spec, "on" if active else "off")
        self.update(now)

    # Requests.

    def _handle_request(self, request: Request) -> Reply:
        now = self._now
        match request:
            case Hello(host_version=host_version):
                return self._hello(host_version)
            case Unlock():
                return self._unlock(request, now)
            case GetDoorState(door=door):
                return self._door_state(door)
            case ReadWeights():
                return WeightsReply(
                    tuple(
                        ShelfReading(index, reading.status, reading.weight_mg)
                        for index, reading in enumerate(ch.reading() for ch in self.channels)
                    )
                )
            case Tare(shelf=shelf):
                return self._tare(shelf)
            case Calibrate(shelf=shelf, mass_mg=mass_mg):
                return self._calibrate(shelf, mass_mg)
            case Diagnostics():
                return self._diagnostics(now)
        logger.warning("no handler for request %s", type(request).__name__)
        return ErrorReply(request.TYPE, ErrorCode.UNKNOWN_TYPE)

    def _hello(self, host_version: int) -> Reply:
        if host_version < SIMULATED_PROTOCOL_VERSION:
            return ErrorReply(Hello.TYPE, ErrorCode.UNSUPPORTED_VERSION)
        major, minor, patch = self.config.firmware_version
        return HelloReply(
            protocol_version=SIMULATED_PROTOCOL_VERSION,
            firmware_major=major,
            firmware_minor=minor,
            firmware_patch=patch,
            serial_number=self.config.board_serial_number,
            doors=self.config.doors,
            shelves=self.config.shelves,
            capabilities=CAPABILITIES,
        )

    def _unlock(self, request: Unlock, now: float) -> Reply:
        if not 0 <= request.door < len(self.doors):
            return ErrorReply(Unlock.TYPE, ErrorCode.BAD_ARGUMENT)
        if not MIN_PULSE_MS <= request.pulse_ms <= MAX_PULSE_MS:
            return ErrorReply(Unlock.TYPE, ErrorCode.BAD_ARGUMENT)
        door = self.doors[request.door]
        try:
            self.report_door_changes(door.pulse(now, request.pulse_ms / 1000, request.token))
        except LockBusyError:
            return ErrorReply(Unlock.TYPE, ErrorCode.BUSY)
        logger.info(
            "door %d pulsed for %d ms, token %d", request.door, request.pulse_ms, request.token
        )
        return UnlockReply(request.door, request.token)

    def _door_state(self, door_index: int) -> Reply:
        if door_index == ALL_DOORS:
            doors = self.doors
        elif 0 <= door_index < len(self.doors):
            doors = [self.doors[door_index]]
        else:
            return ErrorReply(GetDoorState.TYPE, ErrorCode.BAD_ARGUMENT)
        return DoorStateReply(
            tuple(
                DoorStatus(door.index, door.lock_state, door.position, door.last_token)
                for door in doors
            )
        )

    def _tare(self, shelf: int) -> Reply:
        if not 0 <= shelf < len(self.channels):
            return ErrorReply(Tare.TYPE, ErrorCode.BAD_ARGUMENT)
        try:
            self.channels[shelf].tare()
        except ScaleRejectedError as error:
            logger.info("shelf %d: %s", shelf, error)
            return ErrorReply(Tare.TYPE, error.code)
        return TareReply(shelf)

    def _calibrate(self, shelf: int, mass_mg: int) -> Reply:
        if not 0 <= shelf < len(self.channels):
            return ErrorReply(Calibrate.TYPE, ErrorCode.BAD_ARGUMENT)
        try:
            gain_ppm = self.channels[shelf].calibrate(mass_mg)
        except ScaleRejectedError as error:
            logger.info("shelf %d: %s", shelf, error)
            return ErrorReply(Calibrate.TYPE, error.code)
        logger.info("shelf %d calibrated to %d mg, gain %d ppm", shelf, mass_mg, gain_ppm)
        return CalibrateReply(shelf, gain_ppm)

    def _diagnostics(self, now: float) -> Reply:
        uptime_s = now - self.start_time
        # Slow, deterministic wander so that successive readings differ like real sensors.
        supply = self.config.supply_mv + SUPPLY_RIPPLE_MV * math.sin(uptime_s / 37)
        temperature = self.config.temperature_c * 10 + TEMPERATURE_WANDER_DC * math.sin(
            uptime_s / 600
        )
        link_stats = self.link.stats
        decoder_stats = self.link.decoder.stats
        return DiagnosticsReply(
            uptime_s=_clamp(int(uptime_s), 0xFFFFFFFF),
            supply_mv=_clamp(round(supply), 0xFFFF),
            temperature_dc=min(max(round(temperature), -0x8000), 0x7FFF),
            reset_cause=ResetCause.POWER_ON,
            rx_frames=_clamp(link_stats.rx_frames, 0xFFFFFFFF),
            rx_header_errors=_clamp(decoder_stats.header_errors, 0xFFFFFFFF),
            rx_crc_errors=_clamp(decoder_stats.crc_errors, 0xFFFFFFFF),
            repeated_requests=_clamp(link_stats.repeated_requests, 0xFFFFFFFF),
            lock_faults=_clamp(self.lock_fault_count, 0xFFFF),
            scale_faults=_clamp(self.scale_fault_count, 0xFFFF),
            events_pending=_clamp(self.link.events_pending, 0xFF),
            events_dropped=_clamp(link_stats.events_dropped, 0xFFFF),
        )
