"""Hypothesis strategies for every protocol message, derived from the message layouts."""

import enum
from dataclasses import fields

from hypothesis import strategies as st

from firmware_protocol.messages import (
    EVENT_TYPES,
    MESSAGE_TYPES,
    DoorStateReply,
    DoorStatus,
    Message,
    PollEventReply,
    ShelfReading,
    WeightsReply,
    _Packed,
)

_RANGES = {
    "B": (0, 0xFF),
    "H": (0, 0xFFFF),
    "I": (0, 0xFFFF_FFFF),
    "h": (-(2**15), 2**15 - 1),
    "i": (-(2**31), 2**31 - 1),
}


def packed(cls: type[_Packed]) -> st.SearchStrategy[_Packed]:
    """Build any value of a fixed-layout message or record, over its full wire range."""
    codes = cls.LAYOUT.format.lstrip("<")
    names = [field.name for field in fields(cls)]  # type: ignore[arg-type]
    assert len(codes) == len(names), cls
    arguments = {}
    for name, code in zip(names, codes, strict=True):
        low, high = _RANGES[code]
        enum_type = cls.ENUM_FIELDS.get(name)
        if enum_type is None:
            arguments[name] = st.integers(low, high)
        elif issubclass(enum_type, enum.IntFlag):
            arguments[name] = st.integers(low, high).map(enum_type)
        else:
            arguments[name] = st.sampled_from(list(enum_type))
    return st.builds(cls, **arguments)


def _records(cls: type[_Packed]) -> st.SearchStrategy[tuple[_Packed, ...]]:
    max_count = (255 - 1) // cls.LAYOUT.size
    return st.lists(packed(cls), max_size=max_count).map(tuple)


_events = st.one_of(*(packed(cls) for cls in EVENT_TYPES.values()))

_SPECIAL: dict[type[Message], st.SearchStrategy[Message]] = {
    DoorStateReply: st.builds(DoorStateReply, _records(DoorStatus)),
    WeightsReply: st.builds(WeightsReply, _records(ShelfReading)),
    PollEventReply: st.one_of(
        st.just(PollEventReply(0)),
        st.builds(PollEventReply, st.integers(1, 255), st.integers(0, 255), _events),
    ),
}


def message(cls: type[Message]) -> st.SearchStrategy[Message]:
    """Build any message of type ``cls``."""
    special = _SPECIAL.get(cls)
    if special is not None:
        return special
    return packed(cls)  # type: ignore[return-value]


any_message = st.one_of(*(message(cls) for cls in MESSAGE_TYPES.values()))
