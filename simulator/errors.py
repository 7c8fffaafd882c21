"""Exceptions of the simulator."""


class ActionRejectedError(Exception):
    """A simulated person's action that the physical cabinet does not allow.

    Examples: opening a latched door, taking a product the shelf does not carry,
    or putting back an item the person does not hold. Nothing changed.
    """
