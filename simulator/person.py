"""A person at the cabinet: the in-process API that tests and virtual students act through.

Every action goes through ``Cabinet``, so it changes the physical models and lands
in the ground-truth log under this person's label.
"""

from simulator.cabinet import Cabinet, HeldItem
from simulator.scale import Item


class Person:
    """A person labelled ``actor`` (a student id, a session label) acting on one cabinet."""

    def __init__(self, cabinet: Cabinet, actor: str) -> None:
        self.cabinet = cabinet
        self.actor = actor

    def open_door(self, door: int) -> None:
        """Open a door that an unlock released; raises ``ActionRejectedError`` if it is latched."""
        self.cabinet.open_door(self.actor, door)

    def force_door(self, door: int) -> None:
        """Pull a door open against its latched lock."""
        self.cabinet.force_door(self.actor, door)

    def close_door(self, door: int) -> None:
        self.cabinet.close_door(self.actor, door)

    def leave_door_open(self, door: int) -> None:
        """Walk away from an open door without closing it."""
        self.cabinet.leave_door_open(self.actor, door)

    def take(self, shelf: int, product_id: str, count: int = 1) -> list[Item]:
        """Take packs from a shelf behind an open door; returns them with their real weights."""
        return self.cabinet.take(self.actor, shelf, product_id, count)

    def put(self, shelf: int, product_id: str, count: int = 1) -> list[Item]:
        """Put held packs on a shelf, which may be the wrong one; returns them."""
        return self.cabinet.put(self.actor, shelf, product_id, count)

    def place_object(self, shelf: int, mass_g: float) -> None:
        """Put something that is not a product, such as a bag, on a shelf."""
        self.cabinet.place_object(self.actor, shelf, mass_g)

    def remove_objects(self, shelf: int) -> int:
        """Remove every object that is not a product from a shelf; returns their mass in mg."""
        return self.cabinet.remove_objects(self.actor, shelf)

    @property
    def held_items(self) -> list[HeldItem]:
        """Packs taken and not put back: what this person walks away with."""
        return self.cabinet.held_items(self.actor)
