"""A host link and a board link joined by an in-memory wire with a manual clock."""

from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_protocol.board import BoardLink
from firmware_protocol.link import HostLink, LinkTiming, Outcome
from firmware_protocol.messages import (
    ALL_DOORS,
    Capability,
    DoorPosition,
    DoorStateReply,
    DoorStatus,
    ErrorCode,
    ErrorReply,
    GetDoorState,
    Hello,
    HelloReply,
    LockState,
    ReadWeights,
    Reply,
    Request,
    ShelfReading,
    ShelfStatus,
    Unlock,
    UnlockReply,
    WeightsReply,
)


@dataclass
class FakeBoard:
    """Request handler that records what the hardware would have done."""

    doors: int = 2
    pulses: list[int] = field(default_factory=list)
    last_tokens: dict[int, int] = field(default_factory=dict)
    busy: bool = False

    def __call__(self, request: Request) -> Reply:
        if isinstance(request, Hello):
            return HelloReply(1, 1, 0, 0, 42, self.doors, 2, Capability.PUSH_EVENTS)
        if isinstance(request, Unlock):
            if request.door >= self.doors:
                return ErrorReply(request.TYPE, ErrorCode.BAD_ARGUMENT)
            if self.busy:
                return ErrorReply(request.TYPE, ErrorCode.BUSY)
            self.pulses.append(request.token)
            self.last_tokens[request.door] = request.token
            return UnlockReply(request.door, request.token)
        if isinstance(request, GetDoorState):
            doors = range(self.doors) if request.door == ALL_DOORS else [request.door]
            return DoorStateReply(
                tuple(
                    DoorStatus(d, LockState.LOCKED, DoorPosition.CLOSED, self.last_tokens.get(d, 0))
                    for d in doors
                )
            )
        if isinstance(request, ReadWeights):
            return WeightsReply((ShelfReading(0, ShelfStatus.STABLE, 1000),))
        return ErrorReply(request.TYPE, ErrorCode.UNKNOWN_TYPE)


class LinkPair:
    """Moves bytes between a HostLink and a BoardLink; ``drop_*`` hooks lose frames."""

    def __init__(self, *, timing: LinkTiming | None = None, push_events: bool = True) -> None:
        self.now = 0.0
        self.board_hw = FakeBoard()
        self.host = HostLink(address=1, timing=timing)
        self.board = BoardLink(address=1, handler=self.board_hw, push_events=push_events)
        self.drop_to_board: Callable[[bytes], bool] = lambda data: False
        self.drop_to_host: Callable[[bytes], bool] = lambda data: False
        self.outcomes: list[Outcome] = []

    def pump(self) -> None:
        """Deliver bytes both ways until the wire is quiet."""
        for _ in range(100):
            to_board = self.host.data_to_send()
            if to_board and not self.drop_to_board(to_board):
                self.board.receive(to_board, self.now)
            to_host = self.board.data_to_send()
            if to_host and not self.drop_to_host(to_host):
                self.outcomes += self.host.receive(to_host, self.now)
            if not to_board and not to_host:
                return
        raise AssertionError("the link never went quiet")

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing every deadline on the way."""
        end = self.now + seconds
        while True:
            deadlines = [d for d in (self.host.next_deadline(), self.board.next_deadline()) if d]
            upcoming = min(deadlines, default=None)
            if upcoming is None or upcoming > end:
                break
            self.now = max(self.now, upcoming)
            self.outcomes += self.host.poll(self.now)
            self.board.poll(self.now)
            self.pump()
        self.now = end

    def take(self) -> list[Outcome]:
        outcomes, self.outcomes = self.outcomes, []
        return outcomes
