"""The kiosk agent: runs the purchase session between the server, the board and the outbox.

Inputs arrive from three places and are handled one at a time by a single
worker task, in arrival order, so that a command, a door event and a timer can
never interleave inside one session:

* commands from the fleet server, through ``MqttLink`` (signed unlocks and
  planograms, verified here before anything moves);
* events and link status from the board, through ``SerialDriver``;
* the agent's own timers (door not opened in time, door left open).

Every step of a session is saved in the outbox database's state table before
the agent acts on it, and the sale is written in the same transaction that
ends the session. After a crash or power loss the agent reloads the session
and finishes it from the board's present door state and weights.

Every verified unlock ends in exactly one ``SaleRecord``, with no lines when
nothing was sold, so that the server always learns when to release the
payment hold. A restock session ends in a ``restock`` event instead.
"""

import asyncio
import json
import logging
import secrets
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from firmware_protocol.link import Aborted, Rejected, ReplyReceived, TimedOut, UnlockVerified
from firmware_protocol.messages import (
    ALL_DOORS,
    BoardStarted,
    DoorClosed,
    DoorForced,
    DoorOpened,
    DoorPosition,
    DoorStateReply,
    DoorStatus,
    Event,
    GetDoorState,
    LockFault,
    LockState,
    ReadWeights,
    ScaleFault,
    ShelfReading,
    Unlock,
    WeightsReply,
)
from kiosk_agent.config import AgentSettings, installed_agent_version
from kiosk_agent.contract import (
    Command,
    DoorTelemetry,
    EventType,
    KioskEvent,
    PlanogramCommand,
    Review,
    SaleLine,
    SaleOutcome,
    SaleRecord,
    SerialLinkState,
    ShelfDelta,
    ShelfTelemetry,
    StockLine,
    Telemetry,
    UnlockCommand,
    UnlockMode,
    utc_now,
)
from kiosk_agent.contract import DoorPosition as ContractDoorPosition
from kiosk_agent.contract import LockState as ContractLockState
from kiosk_agent.decoding import (
    Decoding,
    ItemDecoder,
    KnownPack,
    ProductWeight,
    check_misplaced,
    check_planogram,
)
from kiosk_agent.mqtt_link import LinkOptions, MqttLink
from kiosk_agent.outbox import Outbox, OutboxError, OutboxTransaction
from kiosk_agent.screen import CabinetScreen, ScreenMode, ScreenProduct, ScreenSnapshot
from kiosk_agent.serial_driver import LinkStatus, SerialDriver
from kiosk_agent.session import Session, SessionInput, SessionState
from kiosk_agent.signing import CommandRejectedError, NonceStore, NonceStoreError, verify_command
from kiosk_agent.weighing import ShelfWindow, ZeroTracker

logger = logging.getLogger(__name__)

UNLOCK_PULSE_MS = 500
# Sampling period of the shelves while waiting for stable weights.
WEIGHT_POLL_S = 0.1
# A warm baseline is used only if its last sample is at most this old.
WARM_BASELINE_MAX_AGE_S = 0.5
# Maximum wait for stable weights before a session starts.
BASELINE_TIMEOUT_S = 5.0
# Sampling period of doors and shelves while no session runs.
IDLE_POLL_S = 2.0
# After a restart or a late-confirmed unlock, the board's queued door events
# arrive within this time; without them the weights decide.
RECOVERY_GRACE_S = 2.0
# Largest change of a shelf's weight that counts as untouched.
UNTOUCHED_BAND_MG = 3_000
# Line noise (bytes the serial decoder discarded) is logged at most this often.
NOISE_REPORT_S = 60.0

STATE_SESSION = "session"
STATE_PLANOGRAM = "planogram"
STATE_STOCK = "stock"
# Shelf -> the misplaced packs on it whose weight the decoder measured. It is
# written with STATE_STOCK, and agents that predate it did not write it.
STATE_KNOWN_PACKS = "known_packs"
STATE_LOCK_FAULT = "lock_fault"

E = SessionInput
S = SessionState


def simulation_time(clock_file: Path, now_s: float) -> datetime:
    """Return the simulated time: the file's ISO 8601 time plus the seconds since it was written.

    Simulations set ``clock_file`` to run a week of business in minutes; the demo writes
    the simulated start of each purchase just before it. Raises OSError or ValueError when
    the file is missing or contains no aware timestamp.
    """
    written = clock_file.stat().st_mtime
    base = datetime.fromisoformat(clock_file.read_text(encoding="utf-8").strip())
    if base.tzinfo is None:
        raise ValueError("the time has no UTC offset")
    return (base + timedelta(seconds=max(now_s - written, 0.0))).astimezone(UTC)


class KioskAgent:
    """One cabinet's agent; ``run`` until ``stop`` is called."""

    def __init__(self, settings: AgentSettings, *, agent_version: str | None = None) -> None:
        self.settings = settings
        self.kiosk_id = settings.kiosk_id
        self.key = settings.hmac_key_bytes
        self.agent_version = agent_version or installed_agent_version()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(
            settings.outbox_path,
            retry_base_s=settings.outbox_retry_base_s,
            retry_cap_s=settings.outbox_retry_cap_s,
        )
        self.nonces = NonceStore(settings.nonce_store_path)
        self.screen = CabinetScreen(
            kiosk_id=self.kiosk_id, key=self.key, server_url=settings.server_url
        )

        self.session = self._load_session()
        self.planogram = self._load_planogram()
        self.stock: dict[int, dict[str, int]] = self._load_stock()
        self.known_packs: dict[int, tuple[KnownPack, ...]] = self._load_known_packs()
        self.decoder = self._build_decoder()
        self.lock_fault = self.outbox.get_state(STATE_LOCK_FAULT) is not None

        self.link = LinkStatus(up=False)
        self.readings: dict[int, ShelfReading] = {}
        self.doors: dict[int, DoorStatus] = {}
        self.scale_faults: set[int] = set()
        self.zero: dict[int, ZeroTracker] = {}
        self.sales_recorded = 0

        self._inputs: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._command_arrived = 0.0
        # Shelf windows kept warm while idle, so a session starts from a ready baseline.
        self._idle_windows: dict[int, ShelfWindow] = {}
        self._noise_reported_at = -NOISE_REPORT_S
        self._noise_reported_bytes = 0
        self.driver: SerialDriver | None = None
        self.mqtt: MqttLink | None = None

    # Lifecycle.

    async def run(self) -> None:
        """Start every part, handle inputs until ``stop``, then shut down cleanly."""
        loop = asyncio.get_running_loop()
        self.driver = SerialDriver(
            self.settings.serial_port,
            baudrate=self.settings.serial_baud_rate,
            loop=loop,
            on_event=lambda seq, event: self._inputs.put_nowait(("event", event)),
            on_status=lambda status: self._inputs.put_nowait(("status", status)),
        )
        self.mqtt = MqttLink(
            LinkOptions.from_settings(self.settings, agent_version=self.agent_version),
            outbox=self.outbox,
            on_command=lambda command: self._inputs.put_nowait(
                ("command", (command, time.monotonic()))
            ),
            telemetry_source=self.telemetry,
        )
        self.screen.start(self.settings.screen_host, self.settings.screen_port)
        self._refresh_screen()
        self.driver.start()
        await self.mqtt.start()
        logger.info("agent of cabinet %s started (version %s)", self.kiosk_id, self.agent_version)

        tasks = [
            asyncio.create_task(self._work(), name="agent-worker"),
            asyncio.create_task(self._poll_idle(), name="agent-idle-poll"),
        ]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for handle in self._timers.values():
            handle.cancel()
        await self.mqtt.stop()
        await asyncio.to_thread(self.driver.stop)
        self.screen.stop()
        self.outbox.close()
        self.nonces.close()
        logger.info("agent of cabinet %s stopped", self.kiosk_id)

    def stop(self) -> None:
        self._stop.set()

    async def _work(self) -> None:
        handlers: dict[str, Callable[[Any], Any]] = {
            "command": self._handle_command,
            "event": self._handle_board_event,
            "status": self._handle_link_status,
            "timer": self._handle_timer,
        }
        while True:
            kind, value = await self._inputs.get()
            try:
                await handlers[kind](value)
            except (OutboxError, NonceStoreError):
                logger.exception("storage failed while handling %s %s", kind, value)
                self._refresh_screen()
            except Exception:
                logger.exception("handling %s %s failed", kind, value)

    # Commands from the server.

    async def _handle_command(self, arrival: tuple[Command, float]) -> None:
        command, self._command_arrived = arrival
        try:
            verify_command(
                command,
                key=self.key,
                kiosk_id=self.kiosk_id,
                now=utc_now(),
                nonce_store=self.nonces,
            )
        except CommandRejectedError as exc:
            logger.warning("rejected command %s: %s", exc.command_id, exc)
            self._record_event(
                EventType.COMMAND_REJECTED,
                detail={"command_id": str(exc.command_id), "reason": exc.reason.value},
            )
            return

        if isinstance(command, PlanogramCommand):
            self._apply_planogram(command)
        elif isinstance(command, UnlockCommand):
            await self._start_session(command)

    def _refusal(self, command: UnlockCommand) -> str | None:
        if self.session.busy:
            return "busy"
        if self.lock_fault or self.session.state is S.FAULTED:
            return "lock_fault"
        if not self.link.up:
            return "serial_link_down"
        if self.scale_faults:
            return "scale_fault"
        if command.mode is UnlockMode.PURCHASE and self.planogram is None:
            return "no_planogram"
        if not self.outbox.has_space(self.settings.min_free_disk_bytes):
            return "disk_full"
        return None

    async def _start_session(self, command: UnlockCommand) -> None:
        refusal = self._refusal(command)
        if refusal is not None:
            logger.warning(
                "cabinet %s rejects session %s: %s", self.kiosk_id, command.session_id, refusal
            )
            self._record_event(
                EventType.COMMAND_REJECTED,
                session_id=command.session_id,
                detail={"command_id": str(command.command_id), "reason": refusal},
            )
            if command.mode is UnlockMode.PURCHASE and refusal != "busy":
                # The command was genuine, so the server holds money for it: release it.
                self._record_result_only(command, SaleOutcome.CANCELLED)
            return

        session = self.session
        session.session_id = str(command.session_id)
        session.command_id = str(command.command_id)
        session.door = command.door
        session.mode = command.mode.value
        session.authorized_at = utc_now()
        session.planogram_version = self.planogram.version if self.planogram else 0
        session.apply(E.AUTHORIZE)
        self._save_session()
        self._refresh_screen()

        baseline = self._warm_baseline() or await self._stable_weights(BASELINE_TIMEOUT_S)
        if baseline is None or set(baseline) != set(self._shelves()):
            logger.warning("session %s: shelves did not settle before unlock", session.session_id)
            session.apply(E.UNLOCK_FAILED)
            self._finish(SaleOutcome.CANCELLED, review_reasons=["scale_not_stable"])
            return
        session.baseline_mg = baseline
        session.stock = {shelf: dict(products) for shelf, products in self.stock.items()}
        session.known_packs = {shelf: list(packs) for shelf, packs in self.known_packs.items()}
        session.unlock_token = secrets.randbits(32) or 1
        self._save_session()

        await self._unlock()

    async def _unlock(self) -> None:
        session = self.session
        driver = self._driver()
        started = time.monotonic()
        outcome = await driver.request(Unlock(session.door, UNLOCK_PULSE_MS, session.unlock_token))
        confirmed = isinstance(outcome, ReplyReceived) or (
            isinstance(outcome, UnlockVerified) and outcome.executed
        )
        unknown = isinstance(outcome, TimedOut | Aborted)
        if unknown:
            # The lock may have pulsed. The session stays authorized, and once the board
            # answers again, its last unlock token tells whether it did.
            logger.warning(
                "session %s: unlock outcome unknown (%s); verifying when the board responds",
                session.session_id,
                _describe_failure(outcome),
            )
            return
        if not confirmed:
            reason = _describe_failure(outcome)
            logger.warning("session %s: unlock failed: %s", session.session_id, reason)
            session.apply(E.UNLOCK_FAILED)
            self._finish(SaleOutcome.CANCELLED)
            return

        logger.info(
            "session %s: door %d unlocked; lock pulse %.0f ms after the command arrived "
            "(serial round trip %.0f ms)",
            session.session_id,
            session.door,
            (time.monotonic() - self._command_arrived) * 1000,
            (time.monotonic() - started) * 1000,
        )
        session.unlocked_at = utc_now()
        session.apply(E.UNLOCK_CONFIRMED)
        self._save_session()
        self._report_state("unlocked")
        self._refresh_screen()
        self._start_timer("open_timeout", self.settings.open_timeout_s)

    # Board events.

    async def _handle_board_event(self, event: Event) -> None:
        session = self.session
        if isinstance(event, DoorOpened):
            if session.state is S.UNLOCKED and event.token == session.unlock_token:
                session.opened_at = self.business_now()
                session.apply(E.DOOR_OPENED)
                self._save_session()
                self._cancel_timer("open_timeout")
                self._start_timer("left_open", self.settings.left_open_alarm_s)
                self._report_state("door_open")
                self._refresh_screen()
            else:
                logger.info("door %d opened outside a session (token %d)", event.door, event.token)
        elif isinstance(event, DoorClosed):
            if session.state in (S.UNLOCKED, S.DOOR_OPEN) and event.door == session.door:
                await self._door_closed()
        elif isinstance(event, DoorForced):
            logger.warning("cabinet %s: door %d forced open", self.kiosk_id, event.door)
            self._record_event(
                EventType.DOOR_FORCED,
                detail={"door": event.door, "during_session": session.busy},
            )
        elif isinstance(event, LockFault):
            await self._lock_fault(event)
        elif isinstance(event, ScaleFault):
            logger.warning(
                "cabinet %s: shelf %d scale fault %s", self.kiosk_id, event.shelf, event.fault.name
            )
            self.scale_faults.add(event.shelf)
            self._record_event(
                EventType.SCALE_FAULT,
                detail={"shelf": event.shelf, "fault": event.fault.name.lower()},
            )
            self._refresh_screen()
        elif isinstance(event, BoardStarted):
            logger.warning(
                "cabinet %s: board restarted (%s)", self.kiosk_id, event.reset_cause.name
            )
            self._record_event(
                EventType.BOARD_RESTARTED, detail={"reset_cause": event.reset_cause.name.lower()}
            )
            if session.busy:
                await self._recover()

    async def _lock_fault(self, event: LockFault) -> None:
        logger.error(
            "cabinet %s: lock of door %d fault %s; out of service until cleared",
            self.kiosk_id,
            event.door,
            event.fault.name,
        )
        self.lock_fault = True
        with self.outbox.transaction() as transaction:
            transaction.put_state(STATE_LOCK_FAULT, event.fault.name.lower())
            transaction.record_event(
                self._event(
                    EventType.LOCK_FAULT, {"door": event.door, "fault": event.fault.name.lower()}
                )
            )
        self._notify()
        session = self.session
        if session.can_apply(E.LOCK_JAMMED):
            session.apply(E.LOCK_JAMMED)
            self._cancel_timer("open_timeout")
            self._finish(SaleOutcome.LOCK_FAULT)
        self._refresh_screen()

    async def _door_closed(self) -> None:
        session = self.session
        _trace(session.session_id, "door closed")
        session.closed_at = self.business_now()
        session.apply(E.DOOR_CLOSED)
        self._save_session()
        self._cancel_timer("open_timeout")
        self._cancel_timer("left_open")
        self._report_state("settling")
        self._refresh_screen()
        await self._settle()

    async def _settle(self) -> None:
        session = self.session
        after = await self._stable_weights(self.settings.settle_timeout_s, session.session_id) or {}
        _trace(session.session_id, "weights stable" if after else "settle timed out")
        unsettled = set(session.baseline_mg) - set(after)
        session.apply(E.SETTLE_TIMEOUT if unsettled else E.WEIGHTS_STABLE)
        deltas = {
            shelf: after[shelf] - before
            for shelf, before in session.baseline_mg.items()
            if shelf in after
        }
        if session.mode == UnlockMode.RESTOCK.value:
            self._finish_restock(after)
            return
        decoding = self.decoder.decode(
            session.stock,
            deltas,
            faulted_shelves=unsettled | self.scale_faults,
            home_shelves=self._home_shelves(),
            known_packs=session.known_packs,
        )
        self._finish(SaleOutcome.COMPLETED, decoding=decoding, after=after)

    # Ending a session.

    def _finish(
        self,
        outcome: SaleOutcome,
        *,
        decoding: Decoding | None = None,
        after: dict[int, int] | None = None,
        review_reasons: list[str] | None = None,
    ) -> None:
        """Record the session's sale and end it in one transaction."""
        session = self.session
        lines = self._sale_lines(decoding) if decoding else []
        reasons = [reason.value for reason in decoding.review_reasons] if decoding else []
        reasons += review_reasons or []
        if outcome is SaleOutcome.COMPLETED and not lines:
            outcome = SaleOutcome.NOTHING_TAKEN
        if outcome is SaleOutcome.CANCELLED and session.unlocked_at and not session.opened_at:
            outcome = SaleOutcome.DOOR_NOT_OPENED
        sale = SaleRecord(
            sale_id=uuid.uuid4(),
            kiosk_id=self.kiosk_id,
            session_id=uuid.UUID(session.session_id),
            outcome=outcome,
            opened_at=session.opened_at if outcome is not SaleOutcome.DOOR_NOT_OPENED else None,
            closed_at=session.closed_at if session.opened_at else None,
            recorded_at=self.business_now(),
            lines=lines,
            review=Review(needed=bool(reasons), reasons=reasons),
            shelf_deltas=[
                ShelfDelta(shelf=shelf, before_mg=before, after_mg=after[shelf])
                for shelf, before in sorted(session.baseline_mg.items())
                if after and shelf in after
            ],
            planogram_version=session.planogram_version,
        )
        if decoding is not None:
            self.known_packs = dict(decoding.known_packs)
            self._update_stock(decoding, after or {})

        session.apply(E.RECORD)
        with self.outbox.transaction() as transaction:
            self.outbox.record_sale(sale, in_transaction=transaction)
            if decoding is not None:
                for product, shelf in decoding.misplaced:
                    transaction.record_event(
                        self._event(
                            EventType.ITEM_MISPLACED, {"product_id": product, "shelf": shelf}
                        )
                    )
            self._put_stock(transaction)
            if session.state is S.RECORDED:
                session.apply(E.FINISH)
                session.reset()
            transaction.put_state(STATE_SESSION, json.dumps(session.to_json()))
        _trace(str(sale.session_id), "sale %s committed", sale.sale_id)
        self.sales_recorded += 1
        logger.info(
            "session %s recorded: %s, %d fen, review %s",
            sale.session_id,
            outcome.value,
            sale.total_fen,
            ",".join(reasons) or "no",
        )
        self._notify()
        self._refresh_screen()

    def business_now(self) -> datetime:
        """Return the time a sale is stamped with: now, or the simulation's clock."""
        clock_file = self.settings.clock_file
        if clock_file is None:
            return utc_now()
        try:
            return simulation_time(clock_file, time.time())
        except (OSError, ValueError) as error:
            logger.warning(
                "simulation clock %s unreadable (%s); using real time", clock_file, error
            )
            return utc_now()

    def _record_result_only(self, command: UnlockCommand, outcome: SaleOutcome) -> None:
        """Record a sale with no lines for a refused session, leaving the running one alone."""
        sale = SaleRecord(
            sale_id=uuid.uuid4(),
            kiosk_id=self.kiosk_id,
            session_id=command.session_id,
            outcome=outcome,
            recorded_at=self.business_now(),
            planogram_version=self.planogram.version if self.planogram else 0,
        )
        self.outbox.record_sale(sale, in_transaction=None)
        self._notify()

    def _finish_restock(self, after: dict[int, int]) -> None:
        """Record an operator's round, and count single-product shelves from their weight.

        The operator moves misplaced packs home, as the alerts ask, so every shelf
        is taken to hold only its planogram's products afterwards.
        """
        session = self.session
        for shelf in list(self.stock):
            planned = {p.product_id for p in self._shelf_products(shelf)}
            self.stock[shelf] = {p: n for p, n in self.stock[shelf].items() if p in planned}
        self.known_packs = {}
        for shelf, weight in after.items():
            products = self._shelf_products(shelf)
            if len(products) == 1:
                product = products[0]
                corrected = self._zero(shelf).corrected(weight)
                self.stock.setdefault(shelf, {})[product.product_id] = max(
                    round(corrected / product.unit_weight_mg), 0
                )
        stock_lines = [
            StockLine(shelf=shelf, product_id=product, quantity=count)
            for shelf, products in sorted(self.stock.items())
            for product, count in sorted(products.items())
        ]
        event = KioskEvent(
            event_id=uuid.uuid4(),
            kiosk_id=self.kiosk_id,
            type=EventType.RESTOCK,
            at=utc_now(),
            session_id=uuid.UUID(session.session_id),
            stock=stock_lines,
        )
        session.apply(E.RECORD)
        session.apply(E.FINISH)
        session.reset()
        with self.outbox.transaction() as transaction:
            transaction.record_event(event)
            self._put_stock(transaction)
            transaction.put_state(STATE_SESSION, json.dumps(session.to_json()))
        logger.info("restock recorded: %s", _stock_json(self.stock))
        self._notify()
        self._refresh_screen()

    def _sale_lines(self, decoding: Decoding) -> list[SaleLine]:
        prices = self._prices()
        taken_from: dict[tuple[int, str], int] = {}
        remaining = dict(decoding.charged)
        for shelf, candidate in sorted(decoding.chosen.items()):
            for product, count in candidate.counts:
                if count < 0 and remaining.get(product, 0) > 0:
                    quantity = min(-count, remaining[product])
                    taken_from[(shelf, product)] = taken_from.get((shelf, product), 0) + quantity
                    remaining[product] -= quantity
        homes = self._home_shelves()
        for product, count in remaining.items():
            if count > 0:
                shelf = homes.get(product, [0])[0]
                taken_from[(shelf, product)] = taken_from.get((shelf, product), 0) + count
        return [
            SaleLine(
                product_id=product, quantity=count, unit_price_fen=prices[product], shelf=shelf
            )
            for (shelf, product), count in sorted(taken_from.items())
            if count > 0
        ]

    def _update_stock(self, decoding: Decoding, after: dict[int, int]) -> None:
        if decoding.certain:
            for shelf, candidate in decoding.chosen.items():
                shelf_stock = self.stock.setdefault(shelf, {})
                for product, count in candidate.counts:
                    shelf_stock[product] = max(shelf_stock.get(product, 0) + count, 0)
            return
        # Uncertain: estimate single-product shelves from their weight. Misplaced
        # packs stay counted, since the decoding could not tell whether they left.
        for shelf, weight in after.items():
            products = self._shelf_products(shelf)
            if len(products) == 1:
                only = products[0]
                self.stock.setdefault(shelf, {})[only.product_id] = self._count_from_weight(
                    shelf, only, weight
                )

    def _count_from_weight(self, shelf: int, product: ProductWeight, weight_mg: int) -> int:
        """Count the packs of a single-product shelf's product from the shelf's weight.

        The misplaced packs that the stock lists on the shelf are subtracted
        first, each at its measured weight if known, else at its label weight.
        """
        misplaced_mg = 0
        known = list(self.known_packs.get(shelf, ()))
        for other, count in self.stock.get(shelf, {}).items():
            if other == product.product_id or count <= 0:
                continue
            measured = [pack.weight_mg for pack in known if pack.product_id == other][:count]
            label = self.decoder.weights.get(other)
            label_mg = label.unit_weight_mg if label else 0
            misplaced_mg += sum(measured) + (count - len(measured)) * label_mg
        corrected = self._zero(shelf).corrected(weight_mg) - misplaced_mg
        return max(round(corrected / product.unit_weight_mg), 0)

    # Link status, timers and recovery.

    async def _handle_link_status(self, status: LinkStatus) -> None:
        was_up = self.link.up
        self.link = status
        if status.up and not was_up:
            logger.info("serial link to cabinet %s board is up", self.kiosk_id)
            self._record_event(EventType.SERIAL_LINK_UP, detail={})
            await self._recover()
        elif was_up and not status.up:
            logger.warning(
                "serial link to cabinet %s board is down: %s", self.kiosk_id, status.error
            )
            self._record_event(EventType.SERIAL_LINK_DOWN, detail={"error": status.error[:200]})
        self._refresh_screen()

    async def _handle_timer(self, name: str) -> None:
        self._timers.pop(name, None)
        session = self.session
        if name == "open_timeout" and session.state is S.UNLOCKED:
            position = await self._door_position(session.door)
            if position is DoorPosition.OPEN:
                session.opened_at = self.business_now()
                session.apply(E.DOOR_OPENED)
                self._save_session()
                self._start_timer("left_open", self.settings.left_open_alarm_s)
                return
            now = await self._stable_weights(self.settings.settle_timeout_s) or {}
            touched = [
                shelf
                for shelf, before in session.baseline_mg.items()
                if shelf not in now or abs(now[shelf] - before) > UNTOUCHED_BAND_MG
            ]
            if touched:
                # The door opened and closed while its events were lost: settle by weight.
                logger.warning(
                    "session %s: no door events, but shelves %s changed; settling",
                    session.session_id,
                    touched,
                )
                await self._door_closed()
                return
            logger.info("session %s: door not opened in time", session.session_id)
            session.apply(E.OPEN_TIMEOUT)
            self._finish(SaleOutcome.CANCELLED)
        elif name == "left_open" and session.state is S.DOOR_OPEN:
            logger.warning("session %s: door %d left open", session.session_id, session.door)
            self._record_event(
                EventType.DOOR_LEFT_OPEN,
                session_id=uuid.UUID(session.session_id),
                detail={"door": session.door},
            )

    async def _recover(self) -> None:
        """Finish a session that a restart interrupted, from the board's present state."""
        session = self.session
        if not session.busy:
            return
        logger.warning(
            "resuming session %s of cabinet %s in state %s",
            session.session_id,
            self.kiosk_id,
            session.state.value,
        )
        if session.state is S.AUTHORIZED:
            status = await self._door_status(session.door)
            if status is None:
                logger.warning(
                    "session %s: door state unreadable; retrying later", session.session_id
                )
                return
            if session.unlock_token and status.last_token == session.unlock_token:
                session.unlocked_at = session.unlocked_at or utc_now()
                session.apply(E.UNLOCK_CONFIRMED)
                self._save_session()
                self._report_state("unlocked")
                self._start_timer("open_timeout", self.settings.open_timeout_s)
            else:
                session.apply(E.UNLOCK_FAILED)
                self._finish(SaleOutcome.CANCELLED)
                return
        if session.state is S.UNLOCKED:
            # The board may still hold DoorOpened and DoorClosed events for this
            # session; let them arrive before the weights decide.
            self._start_timer("open_timeout", RECOVERY_GRACE_S)
            self._refresh_screen()
            return
        if session.state is S.DOOR_OPEN:
            if await self._door_position(session.door) is not DoorPosition.OPEN:
                await self._door_closed()
            self._refresh_screen()
            return
        if session.state is S.SETTLING:
            await self._settle()
        elif session.state is S.CANCELLED:
            self._finish(SaleOutcome.CANCELLED)

    def _start_timer(self, name: str, delay_s: float) -> None:
        self._cancel_timer(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(
            delay_s, lambda: self._inputs.put_nowait(("timer", name))
        )

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    # Board queries.

    def _driver(self) -> SerialDriver:
        assert self.driver is not None, "the agent is not running"
        return self.driver

    async def _read_weights(self) -> list[ShelfReading] | None:
        outcome = await self._driver().request(ReadWeights())
        if isinstance(outcome, ReplyReceived) and isinstance(outcome.reply, WeightsReply):
            for reading in outcome.reply.shelves:
                self.readings[reading.shelf] = reading
                if reading.fault:
                    self.scale_faults.add(reading.shelf)
                elif reading.shelf in self.scale_faults and reading.stable:
                    self.scale_faults.discard(reading.shelf)
                    self._record_event(EventType.SCALE_RECOVERED, detail={"shelf": reading.shelf})
            return list(outcome.reply.shelves)
        return None

    async def _stable_weights(
        self, timeout_s: float, session_id: str | None = None
    ) -> dict[int, int] | None:
        """Sample every shelf until all are stable; return what settled by the timeout.

        With a ``session_id``, each change of the board's stable flags is traced.
        """
        # The shared windows: samples taken while settling make the next baseline ready.
        windows = self._idle_windows
        windows.clear()
        stable: dict[int, int] = {}
        flagged: set[int] | None = None
        deadline = time.monotonic() + timeout_s
        sample_at = time.monotonic()
        while True:
            readings = await self._read_weights()
            now = time.monotonic()
            if session_id is not None and readings is not None:
                now_flagged = {r.shelf for r in readings if r.stable and not r.fault}
                if now_flagged != flagged:
                    unflagged = sorted({r.shelf for r in readings} - now_flagged)
                    if unflagged:
                        _trace(session_id, "board flags shelves %s not stable", unflagged)
                    else:
                        _trace(session_id, "board flags every shelf stable")
                    flagged = now_flagged
            for reading in readings or []:
                if reading.fault:
                    continue
                window = windows.setdefault(reading.shelf, ShelfWindow())
                window.add(now, reading.weight_mg, reading.stable)
                weight = window.stable_weight(now)
                if weight is not None:
                    stable[reading.shelf] = weight
                else:
                    stable.pop(reading.shelf, None)
            shelves = set(self._shelves()) - self.scale_faults
            if shelves and shelves <= set(stable):
                return stable
            if now >= deadline:
                return stable if stable else None
            sample_at = await _sleep_until_next_sample(sample_at)

    async def _door_status(self, door: int) -> DoorStatus | None:
        outcome = await self._driver().request(GetDoorState(door))
        if isinstance(outcome, ReplyReceived) and isinstance(outcome.reply, DoorStateReply):
            for status in outcome.reply.doors:
                self.doors[status.door] = status
            return outcome.reply.doors[0] if outcome.reply.doors else None
        return None

    async def _door_position(self, door: int) -> DoorPosition | None:
        status = await self._door_status(door)
        return status.position if status else None

    async def _poll_idle(self) -> None:
        """Keep weights, doors and zero tracking fresh while no session runs."""
        last_doors = 0.0
        sample_at = time.monotonic()
        while True:
            sample_at = await _sleep_until_next_sample(sample_at)
            if not self.link.up or self.session.busy:
                continue
            now = time.monotonic()
            self._report_line_noise(now)
            if now - last_doors >= IDLE_POLL_S:
                last_doors = now
                outcome = await self._driver().request(GetDoorState(ALL_DOORS))
                if isinstance(outcome, ReplyReceived) and isinstance(outcome.reply, DoorStateReply):
                    for status in outcome.reply.doors:
                        self.doors[status.door] = status
            readings = await self._read_weights()
            # A session may have started while the board was replying.
            if readings is None or self.session.busy:
                continue
            now = time.monotonic()
            for reading in readings:
                window = self._idle_windows.setdefault(reading.shelf, ShelfWindow())
                if reading.fault:
                    window.clear()
                    continue
                window.add(now, reading.weight_mg, reading.stable)
            if now - last_doors < WEIGHT_POLL_S * 1.5:
                for reading in readings:
                    if reading.stable and not reading.fault:
                        self._zero(reading.shelf).update(reading.weight_mg, idle=True)
                if self.planogram is not None:
                    self._estimate_stock(readings)

    def _report_line_noise(self, now: float) -> None:
        stats = self._driver().decoder_stats
        if stats.bytes_discarded <= self._noise_reported_bytes and stats.bytes_discarded > 0:
            return
        if now - self._noise_reported_at < NOISE_REPORT_S:
            return
        if stats.bytes_discarded > self._noise_reported_bytes:
            logger.warning(
                "serial line of cabinet %s is noisy: %d bytes discarded, %d header and %d CRC "
                "errors since the port opened; check the cable and its shielding",
                self.kiosk_id,
                stats.bytes_discarded,
                stats.header_errors,
                stats.crc_errors,
            )
            self._noise_reported_at = now
        self._noise_reported_bytes = stats.bytes_discarded

    def _warm_baseline(self) -> dict[int, int] | None:
        """Return every shelf's stable weight from the idle windows, if all are stable now."""
        now = time.monotonic()
        baseline = {}
        for shelf in self._shelves():
            window = self._idle_windows.get(shelf)
            sampled_at = window.last_sample_at if window else None
            if window is None or sampled_at is None or now - sampled_at > WARM_BASELINE_MAX_AGE_S:
                return None
            weight = window.stable_weight(sampled_at)
            if weight is None or shelf in self.scale_faults:
                return None
            baseline[shelf] = weight
        return baseline or None

    # Planogram and stock.

    def _apply_planogram(self, command: PlanogramCommand) -> None:
        if self.planogram is not None and command.version <= self.planogram.version:
            logger.info(
                "ignoring planogram version %d: version %d is in force",
                command.version,
                self.planogram.version,
            )
            return
        shelves = {
            shelf.shelf: [_product_weight(product) for product in shelf.products]
            for shelf in command.shelves
        }
        conflicts = check_planogram(shelves)
        if conflicts:
            logger.warning(
                "planogram %d has %d ambiguous take combinations, e.g. %s; "
                "sessions that match them go to review",
                command.version,
                len(conflicts),
                conflicts[0].describe(),
            )
        # Without every shelf's door, any pack may end up on any shelf.
        doors = {shelf.shelf: shelf.door for shelf in command.shelves if shelf.door is not None}
        every_door = doors if len(doors) == len(command.shelves) else None
        misplaced = check_misplaced(shelves, every_door, limit=1)
        if misplaced:
            logger.warning(
                "planogram %d lets misplaced packs pass for other products, e.g. %s; "
                "sessions that take them go to review",
                command.version,
                misplaced[0].describe(),
            )
        self.planogram = command
        self.decoder = self._build_decoder()
        products = {p.product_id for shelf in command.shelves for p in shelf.products}
        self.stock = {
            shelf: {p: n for p, n in counts.items() if p in products}
            for shelf, counts in self.stock.items()
        }
        self.known_packs = {
            shelf: planned_packs
            for shelf, packs in self.known_packs.items()
            if (planned_packs := tuple(pack for pack in packs if pack.product_id in products))
        }
        self._estimate_stock()
        self._put_state(STATE_PLANOGRAM, command.model_dump_json())
        logger.info("planogram version %d applied", command.version)
        self._refresh_screen()

    def _estimate_stock(self, readings: list[ShelfReading] | None = None) -> None:
        """Count single-product shelves from their weight where the count is off by a pack.

        Weight that changes while no session runs comes from an operator with a key (a
        silent restock) or a forced door; the count follows the weight, and a restock
        event reports it to the server. Misplaced packs on such a shelf stay counted, because
        the weight cannot tell whether they were taken away, but their measured
        weights are forgotten: a pack that left must not be matched by its weight.
        Shelves with several products keep their count, or start at their capacity
        when none is known.
        """
        changed: list[StockLine] = []
        before = (_stock_json(self.stock), _known_packs_json(self.known_packs))
        for shelf in self._shelves():
            products = self._shelf_products(shelf)
            reading = self.readings.get(shelf)
            if len(products) == 1 and reading is not None and reading.stable and not reading.fault:
                only = products[0]
                count = self._count_from_weight(shelf, only, reading.weight_mg)
                known = self.stock.get(shelf, {}).get(only.product_id)
                if known != count:
                    self.stock.setdefault(shelf, {})[only.product_id] = count
                    self.known_packs.pop(shelf, None)
                    if known is not None:
                        changed.append(
                            StockLine(shelf=shelf, product_id=only.product_id, quantity=count)
                        )
            elif products and not self.stock.get(shelf):
                spec = next(s for s in self._planogram().shelves if s.shelf == shelf)
                self.stock[shelf] = {p.product_id: spec.capacity_items for p in products}
        if (_stock_json(self.stock), _known_packs_json(self.known_packs)) == before:
            return
        with self.outbox.transaction() as transaction:
            self._put_stock(transaction)
            if changed and readings is not None:
                logger.info("stock changed outside a session: %s", changed)
                transaction.record_event(
                    KioskEvent(
                        event_id=uuid.uuid4(),
                        kiosk_id=self.kiosk_id,
                        type=EventType.RESTOCK,
                        at=utc_now(),
                        detail={"silent": True},
                        stock=changed,
                    )
                )
        self._notify()

    def _planogram(self) -> PlanogramCommand:
        assert self.planogram is not None
        return self.planogram

    def _shelves(self) -> list[int]:
        if self.planogram is not None:
            return sorted(shelf.shelf for shelf in self.planogram.shelves)
        return sorted(self.readings)

    def _shelf_products(self, shelf: int) -> list[ProductWeight]:
        if self.planogram is None:
            return []
        for spec in self.planogram.shelves:
            if spec.shelf == shelf:
                return [_product_weight(product) for product in spec.products]
        return []

    def _home_shelves(self) -> dict[str, list[int]]:
        homes: dict[str, list[int]] = {}
        for spec in self.planogram.shelves if self.planogram else []:
            for product in spec.products:
                homes.setdefault(product.product_id, []).append(spec.shelf)
        return homes

    def _prices(self) -> dict[str, int]:
        return {
            product.product_id: product.price_fen
            for spec in (self.planogram.shelves if self.planogram else [])
            for product in spec.products
        }

    def _build_decoder(self) -> ItemDecoder:
        products = {
            product.product_id: _product_weight(product)
            for spec in (self.planogram.shelves if self.planogram else [])
            for product in spec.products
        }
        return ItemDecoder(products.values())

    def _zero(self, shelf: int) -> ZeroTracker:
        return self.zero.setdefault(shelf, ZeroTracker())

    # Persistence, events and the screen.

    def _load_session(self) -> Session:
        raw = self.outbox.get_state(STATE_SESSION)
        if raw is None:
            return Session(self.kiosk_id)
        return Session.from_json(json.loads(raw))

    def _load_planogram(self) -> PlanogramCommand | None:
        raw = self.outbox.get_state(STATE_PLANOGRAM)
        return PlanogramCommand.model_validate_json(raw) if raw else None

    def _load_stock(self) -> dict[int, dict[str, int]]:
        raw = self.outbox.get_state(STATE_STOCK)
        if not raw:
            return {}
        return {int(shelf): dict(products) for shelf, products in json.loads(raw).items()}

    def _load_known_packs(self) -> dict[int, tuple[KnownPack, ...]]:
        raw = self.outbox.get_state(STATE_KNOWN_PACKS)
        if not raw:
            return {}
        return {
            int(shelf): tuple(KnownPack(**pack) for pack in packs)
            for shelf, packs in json.loads(raw).items()
        }

    def _put_stock(self, transaction: OutboxTransaction) -> None:
        """Write the stock and the known packs, which must always change together."""
        transaction.put_state(STATE_STOCK, json.dumps(_stock_json(self.stock)))
        transaction.put_state(STATE_KNOWN_PACKS, json.dumps(_known_packs_json(self.known_packs)))

    def _put_state(self, key: str, value: str) -> None:
        with self.outbox.transaction() as transaction:
            transaction.put_state(key, value)

    def _save_session(self) -> None:
        self._put_state(STATE_SESSION, json.dumps(self.session.to_json()))

    def _event(
        self, event_type: EventType, detail: dict[str, Any], session_id: uuid.UUID | None = None
    ) -> KioskEvent:
        return KioskEvent(
            event_id=uuid.uuid4(),
            kiosk_id=self.kiosk_id,
            type=event_type,
            at=utc_now(),
            session_id=session_id,
            detail=detail,
        )

    def _record_event(
        self,
        event_type: EventType,
        *,
        detail: dict[str, Any],
        session_id: uuid.UUID | None = None,
    ) -> None:
        self.outbox.record_event(self._event(event_type, detail, session_id))
        self._notify()

    def _report_state(self, state: str) -> None:
        """Tell the server how the session proceeds, so the student's phone can follow it."""
        self._record_event(
            EventType.SESSION_STATE,
            session_id=uuid.UUID(self.session.session_id),
            detail={"state": state, "door": self.session.door},
        )

    def _notify(self) -> None:
        if self.mqtt is not None:
            self.mqtt.notify_outbox()

    def _refresh_screen(self) -> None:
        state = self.session.state
        if not self.link.up:
            snapshot = ScreenSnapshot(ScreenMode.OUT_OF_SERVICE, reason="serial_link_down")
        elif self.lock_fault or state is S.FAULTED:
            snapshot = ScreenSnapshot(ScreenMode.OUT_OF_SERVICE, reason="lock_fault")
        elif self.scale_faults:
            snapshot = ScreenSnapshot(ScreenMode.OUT_OF_SERVICE, reason="scale_fault")
        elif self.planogram is None:
            snapshot = ScreenSnapshot(ScreenMode.OUT_OF_SERVICE, reason="no_planogram")
        elif self.session.mode == UnlockMode.RESTOCK.value and self.session.busy:
            snapshot = ScreenSnapshot(ScreenMode.OUT_OF_SERVICE, reason="restock")
        elif state in (S.UNLOCKED, S.DOOR_OPEN):
            snapshot = ScreenSnapshot(ScreenMode.DOOR_OPEN)
        elif state in (S.SETTLING, S.SETTLED, S.AUTHORIZED):
            snapshot = ScreenSnapshot(ScreenMode.SETTLING)
        elif not self.outbox.has_space(self.settings.min_free_disk_bytes):
            snapshot = ScreenSnapshot(ScreenMode.OUT_OF_SERVICE, reason="disk_full")
        else:
            snapshot = ScreenSnapshot(ScreenMode.READY)
        products = tuple(
            ScreenProduct(product.name, product.price_fen)
            for spec in (self.planogram.shelves if self.planogram else [])
            for product in spec.products
        )
        self.screen.publish(ScreenSnapshot(snapshot.mode, snapshot.reason, products))

    def telemetry(self) -> Telemetry:
        """Return the heartbeat that the MQTT link publishes."""
        board = self.link.board
        return Telemetry(
            kiosk_id=self.kiosk_id,
            sent_at=utc_now(),
            doors=[
                DoorTelemetry(
                    door=status.door,
                    lock=_lock_state(status.lock),
                    position=ContractDoorPosition.OPEN
                    if status.position is DoorPosition.OPEN
                    else ContractDoorPosition.CLOSED,
                )
                for status in sorted(self.doors.values(), key=lambda s: s.door)
            ],
            shelves=[
                ShelfTelemetry(
                    shelf=reading.shelf,
                    weight_mg=self._zero(reading.shelf).corrected(reading.weight_mg),
                    stable=reading.stable,
                    fault=reading.fault,
                )
                for reading in sorted(self.readings.values(), key=lambda r: r.shelf)
            ],
            backlog=self.outbox.backlog(),
            firmware_version=(
                f"{board.firmware_major}.{board.firmware_minor}.{board.firmware_patch}"
                if board
                else None
            ),
            agent_version=self.agent_version,
            serial_link=SerialLinkState.UP if self.link.up else SerialLinkState.DOWN,
            session_state=self.session.state.value,
            planogram_version=self.planogram.version if self.planogram else None,
            disk_free_bytes=shutil.disk_usage(self.settings.data_dir).free,
        )


async def _sleep_until_next_sample(sampled_at: float) -> float:
    """Sleep until ``WEIGHT_POLL_S`` after ``sampled_at``, or not at all if that has passed.

    Returns the new sample time. On this grid, samples stay ``WEIGHT_POLL_S`` apart
    while a read takes less than that, so the serial round trip does not thin out a
    stability window.
    """
    sample_at = max(sampled_at + WEIGHT_POLL_S, time.monotonic())
    await asyncio.sleep(sample_at - time.monotonic())
    return sample_at


def _trace(session_id: str, step: str, *args: object) -> None:
    """Log a step of the session at debug, with the time on the monotonic clock.

    The simulator and bench/bench_agent.py on the same machine read the same clock,
    so the benchmark splits the latency from door closed to sale into these steps.
    """
    logger.debug("session %s: " + step + " (monotonic %.4f s)", session_id, *args, time.monotonic())


def _product_weight(product: Any) -> ProductWeight:
    return ProductWeight(product.product_id, product.unit_weight_mg, product.tolerance_mg)


def _stock_json(stock: dict[int, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {str(shelf): dict(sorted(products.items())) for shelf, products in sorted(stock.items())}


def _known_packs_json(
    known_packs: dict[int, tuple[KnownPack, ...]],
) -> dict[str, list[dict[str, Any]]]:
    return {
        str(shelf): [asdict(pack) for pack in packs]
        for shelf, packs in sorted(known_packs.items())
        if packs
    }


def _lock_state(lock: LockState) -> ContractLockState:
    return {
        LockState.LOCKED: ContractLockState.LOCKED,
        LockState.RELEASED: ContractLockState.RELEASED,
        LockState.FAULT: ContractLockState.FAULT,
    }[lock]


def _describe_failure(outcome: object) -> str:
    if isinstance(outcome, Rejected):
        return f"board refused: {outcome.code.name}"
    if isinstance(outcome, UnlockVerified):
        return "reply lost and the door state shows no pulse"
    if isinstance(outcome, TimedOut):
        return f"no reply after {outcome.attempts} attempts"
    if isinstance(outcome, Aborted):
        return "serial link down"
    return repr(outcome)
