"""A virtual cabinet: the board with its doors and shelves, and the people acting on it.

``Cabinet`` is the thread-safe entry point for everything outside the serial
line: people taking goods, operators restocking and switching faults, and the
ground-truth log of what really happened. Every action advances the board to
the clock's present time first, so the firmware observes changes in time order.
"""

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from simulator.board import VirtualBoard
from simulator.clock import Clock
from simulator.config import CabinetConfig, Product
from simulator.errors import ActionRejectedError
from simulator.faults import FaultSpec, LinkFaults
from simulator.ground_truth import GroundTruthLog, GroundTruthRecord
from simulator.scale import Item, draw_unit_weight_mg

logger = logging.getLogger(__name__)

OPERATOR = "operator"
SETUP = "setup"


@dataclass(frozen=True, slots=True)
class HeldItem:
    """An item a person holds, with the shelf it was taken from."""

    shelf: int
    item: Item


class Cabinet:
    """Board, physical contents and person actions; see the module docstring."""

    def __init__(
        self,
        config: CabinetConfig,
        clock: Clock,
        *,
        ground_truth: GroundTruthLog | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.board = VirtualBoard(config, clock.now())
        self.link_faults = LinkFaults(config.baud, random.Random(f"{config.seed}:link"))
        self.ground_truth = ground_truth if ground_truth is not None else GroundTruthLog()
        self._item_rng = random.Random(f"{config.seed}:items")
        self._choice_rng = random.Random(f"{config.seed}:choices")
        self._catalogue: dict[str, Product] = {}
        # Products that belong on each shelf; a put of any other product is misplaced.
        self._planogram: list[set[str]] = [set() for _ in range(config.shelves)]
        self._hands: dict[str, list[HeldItem]] = {}
        self._hardware_faults: set[FaultSpec] = set()
        self._listeners: list[Callable[[], None]] = []
        self._load_initial_stock()

    # Plumbing.

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Register a callable run after every change, such as the I/O loop's wake-up."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def start(self) -> None:
        """Start the board, which posts BoardStarted."""
        with self.lock:
            self.board.start(self.clock.now())
        self._notify()

    def update(self) -> None:
        """Advance the board to the clock's present time."""
        with self.lock:
            self.board.update(self.clock.now())
        self._notify()

    def _record(self, now: float, actor: str, action: str, **fields: Any) -> GroundTruthRecord:
        return self.ground_truth.add(
            uptime_ms=self.board.uptime_ms(now),
            wall_time=time.time(),
            actor=actor,
            action=action,
            **fields,
        )

    @contextlib.contextmanager
    def _acting(self) -> Iterator[float]:
        """Hold the lock with the board advanced to now, and yield now.

        Listeners are woken afterwards even when the action is rejected, because
        advancing the board may have queued events for the host.
        """
        try:
            with self.lock:
                now = self.clock.now()
                self.board.update(now)
                yield now
        finally:
            self._notify()

    # Stock.

    def _load_initial_stock(self) -> None:
        now = self.clock.now()
        for shelf, spec in enumerate(self.config.resolved_shelves()):
            for stock in spec.stock:
                self._register_product(shelf, stock.product)
                items = self._draw_items(stock.product, stock.count)
                self.board.cells[shelf].items.extend(items)
                self._record(
                    now,
                    SETUP,
                    "stock",
                    door=spec.door,
                    shelf=shelf,
                    product=stock.product.product_id,
                    count=len(items),
                    weights_mg=tuple(item.weight_mg for item in items),
                )

    def _register_product(self, shelf: int, product: Product) -> None:
        product.validate()
        known = self._catalogue.get(product.product_id)
        if known is not None and known != product:
            raise ValueError(
                f"product {product.product_id!r} is defined twice with different values: "
                f"{known} and {product}"
            )
        self._catalogue[product.product_id] = product
        self._planogram[shelf].add(product.product_id)

    def _draw_items(self, product: Product, count: int) -> list[Item]:
        spread = product.spread if product.spread is not None else self.config.unit_weight_spread
        return [
            Item(
                product.product_id,
                draw_unit_weight_mg(self._item_rng, product.unit_weight_g, spread),
            )
            for _ in range(count)
        ]

    def product(self, product_id: str) -> Product:
        try:
            return self._catalogue[product_id]
        except KeyError:
            known = ", ".join(sorted(self._catalogue))
            raise ActionRejectedError(
                f"unknown product {product_id!r}; known products: {known}"
            ) from None

    def set_stock(
        self,
        shelf: int,
        product_id: str,
        count: int,
        *,
        new_product: Product | None = None,
        actor: str = OPERATOR,
    ) -> list[Item]:
        """Restock ``shelf`` to ``count`` packs of the product; returns the packs added.

        ``new_product`` registers a product that is not in the catalogue yet. The
        operator opens the cabinet with a key, so no door event is reported, but
        the shelf swings like after any other touch.
        """
        if count < 0:
            raise ActionRejectedError(f"stock count {count} must be >= 0")
        with self._acting() as now:
            self._check_shelf(shelf)
            if new_product is not None:
                if new_product.product_id != product_id:
                    raise ActionRejectedError(
                        f"product id {product_id!r} differs from the new product's "
                        f"{new_product.product_id!r}"
                    )
                try:
                    self._register_product(shelf, new_product)
                except ValueError as error:
                    raise ActionRejectedError(str(error)) from None
            product = self.product(product_id)
            self._planogram[shelf].add(product_id)
            cell = self.board.cells[shelf]
            present = [item for item in cell.items if item.product_id == product_id]
            added: list[Item] = []
            removed: list[Item] = []
            if count > len(present):
                added = self._draw_items(product, count - len(present))
                cell.items.extend(added)
            else:
                removed = present[count:]
                for item in removed:
                    cell.items.remove(item)
            cell.touch(now)
            self._record(
                now,
                actor,
                "set_stock",
                door=self.config.door_of_shelf(shelf),
                shelf=shelf,
                product=product_id,
                count=count,
                weights_mg=tuple(item.weight_mg for item in added or removed),
                detail=f"added {len(added)}, removed {len(removed)}",
            )
        return added

    # Person actions.

    def open_door(self, actor: str, door: int) -> None:
        """Open a door that an unlock released; raises ``ActionRejectedError`` if it is latched."""
        self._door_action(actor, door, "open_door")

    def force_door(self, actor: str, door: int) -> None:
        """Pull a door open against its latched lock; the board reports DoorForced."""
        self._door_action(actor, door, "force_door")

    def close_door(self, actor: str, door: int) -> None:
        self._door_action(actor, door, "close_door")

    def _door_action(self, actor: str, door_index: int, action: str) -> None:
        with self._acting() as now:
            self._check_door(door_index)
            door = self.board.doors[door_index]
            if action == "open_door":
                changes = door.open(now)
            elif action == "force_door":
                changes = door.force(now)
            else:
                changes = door.close(now)
            self.board.report_door_changes(changes)
            token = door.last_token if action == "open_door" else None
            self._record(
                now,
                actor,
                action,
                door=door_index,
                detail=None if token is None else f"token {token}",
            )

    def leave_door_open(self, actor: str, door: int) -> None:
        """Record that ``actor`` walked away from the open door; the door stays open."""
        with self._acting() as now:
            self._check_door(door)
            if not self.board.doors[door].is_open:
                raise ActionRejectedError(f"door {door} is closed, so it cannot be left open")
            self._record(now, actor, "leave_door_open", door=door)

    def take(self, actor: str, shelf: int, product_id: str, count: int = 1) -> list[Item]:
        """Take ``count`` packs of a product from a shelf behind an open door; returns them."""
        if count < 1:
            raise ActionRejectedError(f"count {count} must be >= 1")
        with self._acting() as now:
            door = self._check_reachable(shelf)
            cell = self.board.cells[shelf]
            available = [item for item in cell.items if item.product_id == product_id]
            if len(available) < count:
                raise ActionRejectedError(
                    f"shelf {shelf} has {len(available)} of {product_id!r}, cannot take {count}"
                )
            taken = self._choice_rng.sample(available, count)
            for item in taken:
                cell.items.remove(item)
            cell.touch(now)
            hand = self._hands.setdefault(actor, [])
            hand.extend(HeldItem(shelf, item) for item in taken)
            self._record(
                now,
                actor,
                "take",
                door=door,
                shelf=shelf,
                product=product_id,
                count=count,
                weights_mg=tuple(item.weight_mg for item in taken),
            )
        return taken

    def put(self, actor: str, shelf: int, product_id: str, count: int = 1) -> list[Item]:
        """Put ``count`` held packs of a product on a shelf, the right one or not; returns them."""
        if count < 1:
            raise ActionRejectedError(f"count {count} must be >= 1")
        with self._acting() as now:
            door = self._check_reachable(shelf)
            hand = self._hands.get(actor, [])
            held = [entry for entry in hand if entry.item.product_id == product_id]
            if len(held) < count:
                raise ActionRejectedError(
                    f"{actor} has {len(held)} of {product_id!r} in hand, cannot put back {count}"
                )
            # The most recently taken packs go back first.
            returned = held[-count:]
            for entry in returned:
                hand.remove(entry)
            cell = self.board.cells[shelf]
            cell.items.extend(entry.item for entry in returned)
            cell.touch(now)
            self._record(
                now,
                actor,
                "put",
                door=door,
                shelf=shelf,
                product=product_id,
                count=count,
                weights_mg=tuple(entry.item.weight_mg for entry in returned),
                misplaced=product_id not in self._planogram[shelf],
            )
        return [entry.item for entry in returned]

    def place_object(self, actor: str, shelf: int, mass_g: float) -> None:
        """Put something that is not a product on a shelf, such as a bag."""
        if not mass_g > 0:
            raise ActionRejectedError(f"object mass {mass_g} g must be > 0")
        with self._acting() as now:
            door = self._check_reachable(shelf)
            mass_mg = round(mass_g * 1000)
            cell = self.board.cells[shelf]
            cell.foreign_mg += mass_mg
            cell.touch(now)
            self._record(now, actor, "place_object", door=door, shelf=shelf, weights_mg=(mass_mg,))

    def remove_objects(self, actor: str, shelf: int) -> int:
        """Remove every object that is not a product from a shelf; returns their mass in mg."""
        with self._acting() as now:
            door = self._check_reachable(shelf)
            cell = self.board.cells[shelf]
            mass_mg = cell.foreign_mg
            cell.foreign_mg = 0
            cell.touch(now)
            self._record(
                now, actor, "remove_objects", door=door, shelf=shelf, weights_mg=(mass_mg,)
            )
        return mass_mg

    def held_items(self, actor: str) -> list[HeldItem]:
        """Return what ``actor`` holds: taken and not put back."""
        with self.lock:
            return list(self._hands.get(actor, []))

    # Faults.

    def set_fault(self, spec: FaultSpec, actor: str = OPERATOR) -> None:
        """Switch a fault on: a link fault's value is its new setting."""
        self._switch_fault(spec, True, actor)

    def clear_fault(self, spec: FaultSpec, actor: str = OPERATOR) -> None:
        """Switch a hardware fault off; a link fault is cleared by setting it to 0."""
        if not spec.is_hardware:
            raise ActionRejectedError(
                f"clear a link fault by setting it to 0, for example {spec.name}=0"
            )
        self._switch_fault(spec, False, actor)

    def _switch_fault(self, spec: FaultSpec, active: bool, actor: str) -> None:
        with self._acting() as now:
            if spec.is_hardware:
                try:
                    self.board.set_hardware_fault(spec, active, now)
                except ValueError as error:
                    raise ActionRejectedError(str(error)) from None
                if active:
                    self._hardware_faults.add(spec)
                else:
                    self._hardware_faults.discard(spec)
            else:
                self.link_faults.apply(spec)
            self._record(now, actor, "fault_on" if active else "fault_off", detail=str(spec))

    # Checks.

    def _check_door(self, door: int) -> None:
        if not 0 <= door < self.config.doors:
            raise ActionRejectedError(
                f"door {door} does not exist; doors are 0..{self.config.doors - 1}"
            )

    def _check_shelf(self, shelf: int) -> None:
        if not 0 <= shelf < self.config.shelves:
            raise ActionRejectedError(
                f"shelf {shelf} does not exist; shelves are 0..{self.config.shelves - 1}"
            )

    def _check_reachable(self, shelf: int) -> int:
        """Return the door of ``shelf``; raises ``ActionRejectedError`` unless that door is open."""
        self._check_shelf(shelf)
        door = self.config.door_of_shelf(shelf)
        if not self.board.doors[door].is_open:
            raise ActionRejectedError(f"shelf {shelf} is behind door {door}, which is closed")
        return door

    # State for tests and the control socket.

    def status(self) -> dict[str, Any]:
        """Return the true state of doors, shelves and faults, with the board's own readings."""
        with self._acting() as now:
            board = self.board
            doors = [
                {
                    "door": door.index,
                    "lock": door.lock_state.name,
                    "position": door.position.name,
                    "last_token": door.last_token,
                    "pulse_count": door.pulse_count,
                }
                for door in board.doors
            ]
            shelves = []
            for index, (cell, channel) in enumerate(zip(board.cells, board.channels, strict=True)):
                reading = channel.reading()
                counts: dict[str, int] = {}
                for item in cell.items:
                    counts[item.product_id] = counts.get(item.product_id, 0) + 1
                shelves.append(
                    {
                        "shelf": index,
                        "door": self.config.door_of_shelf(index),
                        "load_mg": cell.load_mg,
                        "items": counts,
                        "foreign_mg": cell.foreign_mg,
                        "settled": cell.settled_at() <= now,
                        "reported_status": int(reading.status),
                        "reported_weight_mg": reading.weight_mg,
                        # Times on the simulation clock when the stability window's
                        # verdict last changed: [[time, stable], ...], oldest first.
                        "stability_changes": [list(c) for c in channel.stability_changes],
                    }
                )
            return {
                "uptime_ms": board.uptime_ms(now),
                "serial_number": self.config.board_serial_number,
                "address": self.config.address,
                "baud": self.config.baud,
                "doors": doors,
                "shelves": shelves,
                "hardware_faults": sorted(str(spec) for spec in self._hardware_faults),
                "link_faults": self.link_faults.settings(),
                "link_fault_stats": {
                    "bytes_corrupted": self.link_faults.stats.bytes_corrupted,
                    "frames_corrupted": self.link_faults.stats.frames_corrupted,
                    "rx_bytes_corrupted": self.link_faults.stats.rx_bytes_corrupted,
                    "frames_dropped": self.link_faults.stats.frames_dropped,
                    "replies_delayed": self.link_faults.stats.replies_delayed,
                },
                "events_pending": board.link.events_pending,
            }

    def shelf_items(self, shelf: int) -> list[Item]:
        with self.lock:
            self._check_shelf(shelf)
            return list(self.board.cells[shelf].items)
