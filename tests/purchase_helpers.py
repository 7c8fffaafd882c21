"""Helpers for the purchase, wallet and ingest tests: the Shop layout and cabinet messages.

The fixtures that build a Shop are in purchase_fixtures.
"""

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fleet_server.ingest.messages import ReceivedMessage
from fleet_server.models import (
    TransactionKind,
    Wallet,
    WalletTransaction,
)
from fleet_server.models.base import utc_now
from kiosk_agent.contract import (
    Channel,
    EventType,
    KioskEvent,
    Payload,
    SaleLine,
    SaleOutcome,
    SaleRecord,
    ShelfDelta,
    encode_payload,
    kiosk_topic,
)
from kiosk_agent.purchase_code import purchase_code, window_at
from server_helpers import World

KEY_A_HEX = "5be1c0ffee0123456789abcdef" + "f00d" * 9 + "a1"
KEY_B_HEX = "77" + "3c9e41d2" * 7 + "ab4f8e"
assert len(KEY_A_HEX) == len(KEY_B_HEX) == 64
INITIAL_BALANCE_FEN = 5_000


@dataclass
class ShopProduct:
    id: int
    name: str
    price_fen: int
    county_id: int
    county_name: str
    county_code: str

    @property
    def contract_id(self) -> str:
        return str(self.id)


@dataclass
class Shop:
    world: World
    kiosk_id: str
    key: bytes
    other_kiosk_id: str
    student_id: int
    poor_student_id: int
    products: list[ShopProduct]
    headers: dict[str, dict[str, str]]


def current_code(shop: Shop, *, age_windows: int = 0) -> str:
    return purchase_code(shop.key, shop.kiosk_id, window_at(time.time()) - age_windows)


def fund_wallet(session: Session, user_id: int, amount_fen: int) -> None:
    """Create a wallet with a top-up transaction, as an administrator's top-up would."""
    wallet = Wallet(user_id=user_id, balance_fen=amount_fen, held_fen=0)
    session.add(wallet)
    session.flush()
    session.add(
        WalletTransaction(
            wallet_id=wallet.id,
            kind=TransactionKind.TOP_UP,
            amount_fen=amount_fen,
            reference=f"test-top-up:{user_id}",
            balance_after_fen=amount_fen,
            held_after_fen=0,
        )
    )


# --- Messages a cabinet would send ----------------------------------------------------------


def sale_record(
    kiosk_id: str,
    session_id: uuid.UUID,
    lines: Sequence[tuple[ShopProduct | str, int, int, int]] = (),
    *,
    outcome: SaleOutcome = SaleOutcome.COMPLETED,
    sale_id: uuid.UUID | None = None,
    review_reasons: Sequence[str] = (),
) -> SaleRecord:
    """Return a sale of (product, quantity, unit price fen, shelf) lines."""
    now = utc_now()
    return SaleRecord(
        sale_id=sale_id or uuid.uuid4(),
        kiosk_id=kiosk_id,
        session_id=session_id,
        outcome=outcome,
        opened_at=None if outcome is SaleOutcome.DOOR_NOT_OPENED else now - timedelta(seconds=20),
        closed_at=None if outcome is SaleOutcome.DOOR_NOT_OPENED else now - timedelta(seconds=5),
        recorded_at=now,
        lines=[
            SaleLine(
                product_id=product.contract_id if isinstance(product, ShopProduct) else product,
                quantity=quantity,
                unit_price_fen=price,
                shelf=shelf,
            )
            for product, quantity, price, shelf in lines
        ],
        review={"needed": bool(review_reasons), "reasons": list(review_reasons)},
        shelf_deltas=[
            ShelfDelta(
                shelf=shelf, before_mg=5_000_000, after_mg=max(5_000_000 - 250_000 * quantity, 0)
            )
            for _, quantity, _, shelf in lines
        ],
        planogram_version=1,
    )


def kiosk_event(
    kiosk_id: str,
    event_type: EventType,
    *,
    session_id: uuid.UUID | None = None,
    detail: dict[str, object] | None = None,
) -> KioskEvent:
    return KioskEvent(
        event_id=uuid.uuid4(),
        kiosk_id=kiosk_id,
        type=event_type,
        at=utc_now(),
        session_id=session_id,
        detail=detail or {},
    )


def received(payload: Payload, *, kiosk_id: str | None = None) -> ReceivedMessage:
    """Wrap a sale or event as the worker would receive it on its cabinet's topic."""
    channel = Channel.SALES if isinstance(payload, SaleRecord) else Channel.EVENTS
    topic_kiosk = kiosk_id or payload.kiosk_id  # type: ignore[attr-defined]
    return ReceivedMessage(kiosk_topic(topic_kiosk, channel), encode_payload(payload), utc_now())


def wallet_of(session: Session, user_id: int) -> Wallet:
    return session.scalars(sa.select(Wallet).where(Wallet.user_id == user_id)).one()
