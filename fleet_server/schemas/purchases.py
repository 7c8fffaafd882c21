"""Bodies for purchases, receipts, wallets, sales and refunds. Every amount is integer fen."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, Field, model_validator

from fleet_server.models import (
    County,
    PurchaseSession,
    PurchaseState,
    Sale,
    SaleLine,
    SaleRefund,
    TransactionKind,
    WalletTransaction,
)
from fleet_server.schemas.common import RequestModel
from fleet_server.services.sales import PaymentStatus, payment_status
from fleet_server.services.wallets import WalletView
from kiosk_agent.contract import SaleOutcome

# Strict: 12.5, 1250.0 and "1250" are rejected, never rounded.
TopUpFen = Annotated[
    int, Field(strict=True, gt=0, le=1_000_000, description="amount in fen, at most 10,000 yuan")
]
RefundFen = Annotated[int, Field(strict=True, gt=0, le=2**31 - 1, description="amount in fen")]
Reference = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[\x21-\x7e]+$",
        description="idempotency key: repeating a request with it changes nothing",
    ),
]
Reason = Annotated[str, Field(min_length=1, max_length=500)]


# --- Purchases ------------------------------------------------------------------------------


class PurchaseCreate(RequestModel):
    kiosk_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        examples=["AH-10357-0001"],
    )
    code: str = Field(
        min_length=1, max_length=64, description="the code from the cabinet's QR code URL"
    )
    door: int = Field(default=0, strict=True, ge=0, le=254, description="door to open")


class PurchaseRelease(RequestModel):
    reason: Reason


class CountyRef(BaseModel):
    id: int
    name: str
    code: str

    @classmethod
    def from_model(cls, county: County) -> "CountyRef":
        return cls(id=county.id, name=county.name, code=county.current_code)


class PurchaseLinePublic(BaseModel):
    line_id: int
    product_id: int | None = Field(
        description="catalog product, None if the cabinet's id is unknown"
    )
    product_name: str
    shelf: int
    quantity: int
    unit_price_fen: int
    amount_fen: int
    refunded_quantity: int
    source_county: CountyRef | None

    @classmethod
    def from_model(cls, line: SaleLine) -> "PurchaseLinePublic":
        return cls(
            line_id=line.id,
            product_id=line.product_id,
            product_name=line.product_name,
            shelf=line.shelf,
            quantity=line.quantity,
            unit_price_fen=line.unit_price_fen,
            amount_fen=line.amount_fen,
            refunded_quantity=line.refunded_quantity,
            source_county=(
                CountyRef.from_model(line.source_county) if line.source_county else None
            ),
        )


class PurchasePublic(BaseModel):
    id: uuid.UUID
    kiosk_id: str
    door: int
    state: PurchaseState
    payment_status: PaymentStatus
    hold_amount_fen: int
    total_fen: int | None = Field(description="value of the goods taken; None until the sale")
    captured_fen: int
    refunded_fen: int
    failure_code: str | None
    sale_id: uuid.UUID | None
    review_needed: bool
    items: list[PurchaseLinePublic]
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_model(cls, purchase: PurchaseSession, sale: Sale | None) -> "PurchasePublic":
        return cls(
            id=purchase.id,
            kiosk_id=purchase.cabinet.kiosk_id,
            door=purchase.door,
            state=purchase.state,
            payment_status=payment_status(purchase, sale),
            hold_amount_fen=purchase.hold_amount_fen,
            total_fen=sale.total_fen if sale else None,
            captured_fen=purchase.hold.captured_fen,
            refunded_fen=purchase.hold.refunded_fen,
            failure_code=purchase.failure_code,
            sale_id=sale.sale_id if sale else None,
            review_needed=sale.review_needed if sale else False,
            items=[PurchaseLinePublic.from_model(line) for line in sale.lines] if sale else [],
            created_at=purchase.created_at,
            updated_at=purchase.updated_at,
            deadline_at=purchase.deadline_at,
            finished_at=purchase.finished_at,
        )


class ReceiptLine(BaseModel):
    product_name: str
    quantity: int
    unit_price_fen: int
    amount_fen: int
    refunded_quantity: int
    source_county_name: str | None = Field(description="产品来源 county; None if unknown")
    source_county_code: str | None = Field(description="its current GB/T 2260 code")


class ReceiptPublic(BaseModel):
    purchase_id: uuid.UUID
    sale_id: uuid.UUID
    kiosk_id: str
    recorded_at: datetime
    lines: list[ReceiptLine]
    total_fen: int
    captured_fen: int
    refunded_fen: int
    payment_status: PaymentStatus
    review_needed: bool

    @classmethod
    def from_model(cls, purchase: PurchaseSession, sale: Sale) -> "ReceiptPublic":
        return cls(
            purchase_id=purchase.id,
            sale_id=sale.sale_id,
            kiosk_id=sale.kiosk_id,
            recorded_at=sale.recorded_at,
            lines=[
                ReceiptLine(
                    product_name=line.product_name,
                    quantity=line.quantity,
                    unit_price_fen=line.unit_price_fen,
                    amount_fen=line.amount_fen,
                    refunded_quantity=line.refunded_quantity,
                    source_county_name=line.source_county.name if line.source_county else None,
                    source_county_code=(
                        line.source_county.current_code if line.source_county else None
                    ),
                )
                for line in sale.lines
            ],
            total_fen=sale.total_fen,
            captured_fen=sale.captured_fen,
            refunded_fen=sale.refunded_fen,
            payment_status=payment_status(purchase, sale),
            review_needed=sale.review_needed,
        )


# --- Wallets --------------------------------------------------------------------------------


class TopUpCreate(RequestModel):
    amount_fen: TopUpFen
    reference: Reference | None = None
    note: Annotated[str, Field(max_length=500)] | None = None


class WalletTransactionPublic(BaseModel):
    id: int
    kind: TransactionKind
    amount_fen: int
    reference: str
    balance_after_fen: int
    held_after_fen: int
    note: str | None
    created_at: datetime

    @classmethod
    def from_model(cls, transaction: WalletTransaction) -> "WalletTransactionPublic":
        return cls(
            id=transaction.id,
            kind=transaction.kind,
            amount_fen=transaction.amount_fen,
            reference=transaction.reference,
            balance_after_fen=transaction.balance_after_fen,
            held_after_fen=transaction.held_after_fen,
            note=transaction.note,
            created_at=transaction.created_at,
        )


class WalletPublic(BaseModel):
    user_id: int
    balance_fen: int
    held_fen: int = Field(description="reserved by purchases that wait for their sale")
    available_fen: int
    transactions: list[WalletTransactionPublic] = Field(description="latest first")

    @classmethod
    def from_view(cls, view: WalletView) -> "WalletPublic":
        return cls(
            user_id=view.user_id,
            balance_fen=view.balance_fen,
            held_fen=view.held_fen,
            available_fen=view.available_fen,
            transactions=[WalletTransactionPublic.from_model(t) for t in view.transactions],
        )


# --- Sales and refunds ----------------------------------------------------------------------


class RefundLineCreate(RequestModel):
    line_id: int = Field(strict=True, gt=0)
    quantity: int = Field(strict=True, gt=0, le=2**31 - 1)


class RefundCreate(RequestModel):
    """Refund either ``amount_fen`` or the items in ``lines``, not both."""

    amount_fen: RefundFen | None = None
    lines: Annotated[list[RefundLineCreate], Field(min_length=1, max_length=1000)] | None = None
    reason: Reason
    reference: Reference | None = None

    @model_validator(mode="after")
    def _check_one_amount(self) -> Self:
        if (self.amount_fen is None) == (self.lines is None):
            raise ValueError("give exactly one of amount_fen and lines")
        return self


class RefundPublic(BaseModel):
    id: int
    reference: str
    amount_fen: int
    reason: str
    lines: list[dict[str, Any]] | None
    created_at: datetime

    @classmethod
    def from_model(cls, refund: SaleRefund) -> "RefundPublic":
        return cls(
            id=refund.id,
            reference=refund.reference,
            amount_fen=refund.amount_fen,
            reason=refund.reason,
            lines=refund.lines,
            created_at=refund.created_at,
        )


class SalePublic(BaseModel):
    sale_id: uuid.UUID
    kiosk_id: str
    session_id: uuid.UUID
    purchase_id: uuid.UUID | None
    outcome: SaleOutcome
    recorded_at: datetime
    received_at: datetime
    total_fen: int
    captured_fen: int
    refunded_fen: int
    review_needed: bool
    review_reasons: list[str]
    lines: list[PurchaseLinePublic]
    refunds: list[RefundPublic]

    @classmethod
    def from_model(cls, sale: Sale) -> "SalePublic":
        return cls(
            sale_id=sale.sale_id,
            kiosk_id=sale.kiosk_id,
            session_id=sale.session_id,
            purchase_id=sale.purchase_session_id,
            outcome=sale.outcome,
            recorded_at=sale.recorded_at,
            received_at=sale.received_at,
            total_fen=sale.total_fen,
            captured_fen=sale.captured_fen,
            refunded_fen=sale.refunded_fen,
            review_needed=sale.review_needed,
            review_reasons=list(sale.review_reasons),
            lines=[PurchaseLinePublic.from_model(line) for line in sale.lines],
            refunds=[RefundPublic.from_model(refund) for refund in sale.refunds],
        )
