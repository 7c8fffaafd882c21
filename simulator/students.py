"""Virtual students: a seeded behaviour model of one visit to an unlocked door.

A student opens the door, takes one to a few packs from the shelves behind it,
sometimes puts one back (sometimes on the wrong shelf), sometimes takes nothing,
sometimes leaves the door open for a while, and closes it. Students neither pay
nor talk to any server, because the host that requested the unlock does that. Every action goes
through ``Person``, so it lands in the ground-truth log, and pauses use the
cabinet's clock, so a ``ManualClock`` runs a visit without real waiting.
"""

import logging
import random
from dataclasses import dataclass, field

from simulator.cabinet import Cabinet, HeldItem
from simulator.person import Person
from simulator.scale import Item

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StudentBehaviour:
    """Probabilities and timings of a visit; ranges are (minimum, maximum) in seconds."""

    take_nothing_p: float = 0.1
    max_items: int = 3
    put_back_p: float = 0.15
    # Probability that a pack put back lands on another shelf behind the same door.
    wrong_shelf_p: float = 0.3
    leave_open_p: float = 0.05
    leave_open_s: tuple[float, float] = (5.0, 20.0)
    pause_s: tuple[float, float] = (0.5, 2.0)

    def validate(self) -> None:
        for name in ("take_nothing_p", "put_back_p", "wrong_shelf_p", "leave_open_p"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} {value} must be a probability in 0..1")
        if self.max_items < 1:
            raise ValueError(f"max_items {self.max_items} must be >= 1")
        for name in ("leave_open_s", "pause_s"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} ({low}, {high}) must satisfy 0 <= minimum <= maximum")


@dataclass
class VisitResult:
    actor: str
    door: int
    taken: list[HeldItem] = field(default_factory=list)
    # Packs put back, with the shelf each was put on.
    returned: list[HeldItem] = field(default_factory=list)
    left_open_s: float | None = None

    @property
    def kept(self) -> list[Item]:
        """Packs the student walked away with."""
        kept = [entry.item for entry in self.taken]
        for entry in self.returned:
            kept.remove(entry.item)
        return kept


def visit(
    cabinet: Cabinet,
    door: int,
    actor: str,
    rng: random.Random,
    behaviour: StudentBehaviour | None = None,
) -> VisitResult:
    """Perform one visit at ``door``, which must be unlocked, else ``ActionRejectedError``."""
    behaviour = behaviour or StudentBehaviour()
    behaviour.validate()
    person = Person(cabinet, actor)
    result = VisitResult(actor, door)
    shelves = [s for s in range(cabinet.config.shelves) if cabinet.config.door_of_shelf(s) == door]

    def pause() -> None:
        cabinet.clock.sleep(rng.uniform(*behaviour.pause_s))

    person.open_door(door)
    pause()
    if rng.random() >= behaviour.take_nothing_p:
        for _ in range(rng.randint(1, behaviour.max_items)):
            choices = _stocked_products(cabinet, shelves)
            if not choices:
                break
            shelf, product_id = rng.choice(choices)
            for item in person.take(shelf, product_id, 1):
                result.taken.append(HeldItem(shelf, item))
            pause()

    if result.taken and rng.random() < behaviour.put_back_p:
        entry = rng.choice(result.taken)
        target = entry.shelf
        others = [shelf for shelf in shelves if shelf != entry.shelf]
        if others and rng.random() < behaviour.wrong_shelf_p:
            target = rng.choice(others)
        for item in person.put(target, entry.item.product_id, 1):
            result.returned.append(HeldItem(target, item))
        pause()

    if rng.random() < behaviour.leave_open_p:
        person.leave_door_open(door)
        result.left_open_s = rng.uniform(*behaviour.leave_open_s)
        cabinet.clock.sleep(result.left_open_s)
    person.close_door(door)
    logger.info(
        "%s visited door %d: took %d, put back %d",
        actor,
        door,
        len(result.taken),
        len(result.returned),
    )
    return result


def _stocked_products(cabinet: Cabinet, shelves: list[int]) -> list[tuple[int, str]]:
    choices: set[tuple[int, str]] = set()
    for shelf in shelves:
        for item in cabinet.shelf_items(shelf):
            choices.add((shelf, item.product_id))
    return sorted(choices)
