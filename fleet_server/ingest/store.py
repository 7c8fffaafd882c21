"""Commit a batch of received messages in one database transaction.

``BatchStore.commit`` validates every message and puts those it cannot accept into the
dead-letter table. It inserts sales and events with ``ON CONFLICT DO NOTHING`` on
(kiosk_id, sale_id) and (kiosk_id, event_id), settles the purchase of every new sale, posts
it to its school's procurement totals, and moves purchase sessions on from session_state
and command_rejected events. Then it runs
the registered hooks and commits. It returns the acknowledgements to send, which the worker
publishes only after the commit: one per accepted message, duplicates included, because
the cabinet resends until it receives one.
"""

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.ingest.messages import (
    ReceivedMessage,
    Rejection,
    ValidEvent,
    ValidSale,
    classify,
)
from fleet_server.models import (
    Cabinet,
    DeadLetter,
    KioskEventRecord,
    Product,
    PurchaseSession,
    Sale,
    SaleLine,
    ServerReviewReason,
)
from fleet_server.models.ingest import DEAD_LETTER_EXCERPT_BYTES
from fleet_server.services.campus_wallet import CampusWalletProvider
from fleet_server.services.payments import PaymentProvider
from fleet_server.services.planograms import parse_planogram_product_id
from fleet_server.services.procurement_posting import (
    CertifiedProduct,
    PricedLine,
    cabinet_schools,
    current_county_codes,
    post,
    sale_postings,
)
from fleet_server.services.purchases import apply_cabinet_event
from fleet_server.services.sales import lock_purchases, settle_sale, settled_purchase_ids
from fleet_server.services.sql import bulk_insert, matches_any
from kiosk_agent.contract import INT32_MAX, EventType, KioskEvent, SaleRecord

logger = logging.getLogger(__name__)

# Hooks run inside the batch transaction with the server's receive time: sale handlers once
# per batch with all its new (not duplicate) sales, event handlers once per new event.
# Fleet monitoring registers its stock and alert handlers here.
SaleHandler = Callable[[Session, Sequence[tuple[SaleRecord, datetime]]], None]
EventHandler = Callable[[Session, KioskEvent, datetime], None]
ProviderFactory = Callable[[Session], PaymentProvider]

# Events that may move a purchase session on.
PURCHASE_EVENT_TYPES = frozenset({EventType.SESSION_STATE, EventType.COMMAND_REJECTED})


@dataclass(frozen=True)
class IngestHooks:
    """Handlers that other parts of the server run on each new sale and event.

    A handler that raises is logged with its traceback and its changes are rolled back to
    a savepoint, so it never costs the batch its sales. A sale handler that fails loses
    its changes for the whole batch.
    """

    sale_handlers: Sequence[SaleHandler] = ()
    event_handlers: Sequence[EventHandler] = ()


@dataclass
class KioskAcks:
    sale_ids: list[uuid.UUID] = field(default_factory=list)
    event_ids: list[uuid.UUID] = field(default_factory=list)


@dataclass
class BatchResult:
    acks: dict[str, KioskAcks] = field(default_factory=dict)
    new_sales: int = 0
    duplicate_sales: int = 0
    new_events: int = 0
    duplicate_events: int = 0
    rejected: int = 0

    def ack(self, kiosk_id: str) -> KioskAcks:
        return self.acks.setdefault(kiosk_id, KioskAcks())


@dataclass(frozen=True)
class _CatalogProduct:
    id: int
    name: str
    source_county_id: int
    certified: CertifiedProduct


def payload_excerpt(payload: bytes) -> str:
    """Return the start of a payload as text of at most DEAD_LETTER_EXCERPT_BYTES UTF-8 bytes.

    Invalid UTF-8 and NUL characters, which PostgreSQL text cannot store, become escapes.
    """
    text = payload[:DEAD_LETTER_EXCERPT_BYTES].decode("utf-8", "backslashreplace")
    text = text.replace("\x00", "\\x00")
    encoded = text.encode()
    if len(encoded) > DEAD_LETTER_EXCERPT_BYTES:
        text = encoded[:DEAD_LETTER_EXCERPT_BYTES].decode("utf-8", "ignore")
    return text


def dead_letter_row(rejection: Rejection) -> dict[str, Any]:
    message = rejection.message
    return {
        "topic": message.topic[:256],
        "kiosk_id": rejection.kiosk_id[:64] if rejection.kiosk_id else None,
        "reason": rejection.reason[:500],
        "payload_excerpt": payload_excerpt(message.payload),
        "payload_bytes": len(message.payload),
        "received_at": message.received_at,
    }


def _unknown_cabinet(message: ReceivedMessage, kiosk_id: str) -> Rejection:
    return Rejection(message, kiosk_id, f"unknown cabinet: no cabinet has kiosk id {kiosk_id!r}")


def _amount_problem(record: SaleRecord) -> str | None:
    """Return why the sale's amounts do not fit the 32-bit fen columns, or None."""
    for line in record.lines:
        if line.amount_fen > INT32_MAX:
            return f"line {line.product_id} amount {line.amount_fen} fen exceeds {INT32_MAX}"
    if record.total_fen > INT32_MAX:
        return f"total {record.total_fen} fen exceeds {INT32_MAX}"
    return None


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


class BatchStore:
    """Commits batches of messages; one instance per worker thread (it caches cabinet ids)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        provider_factory: ProviderFactory = CampusWalletProvider,
        hooks: IngestHooks | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._provider_factory = provider_factory
        self._hooks = hooks or IngestHooks()
        # kiosk_id -> cabinets.id. Only found cabinets are cached, so a cabinet registered
        # later is found on its first message. Cabinets are never deleted.
        self._cabinet_ids: dict[str, int] = {}

    def commit(self, messages: Sequence[ReceivedMessage]) -> BatchResult:
        """Store the batch in one transaction and return what to acknowledge.

        Raises SQLAlchemyError (or a service error from settlement) and leaves nothing
        stored when the transaction fails.
        """
        result = BatchResult()
        sales: dict[tuple[str, str], ValidSale] = {}
        events: dict[tuple[str, str], ValidEvent] = {}
        rejections: list[Rejection] = []
        duplicate_sales_in_batch: list[ValidSale] = []
        duplicate_events_in_batch: list[ValidEvent] = []
        for message in messages:
            parsed = classify(message)
            if isinstance(parsed, ValidSale):
                problem = _amount_problem(parsed.record)
                if problem is not None:
                    rejections.append(Rejection(message, parsed.kiosk_id, problem))
                elif parsed.key in sales:
                    duplicate_sales_in_batch.append(parsed)
                else:
                    sales[parsed.key] = parsed
            elif isinstance(parsed, ValidEvent):
                if parsed.key in events:
                    duplicate_events_in_batch.append(parsed)
                else:
                    events[parsed.key] = parsed
            else:
                rejections.append(parsed)

        with self._session_factory() as db, db.begin():
            kiosk_ids = {sale.kiosk_id for sale in sales.values()}
            kiosk_ids.update(kiosk_event.kiosk_id for kiosk_event in events.values())
            cabinet_ids = self._cabinet_ids_for(db, kiosk_ids)
            for key, sale in list(sales.items()):
                if sale.kiosk_id not in cabinet_ids:
                    del sales[key]
                    rejections.append(_unknown_cabinet(sale.message, sale.kiosk_id))
            for key, kiosk_event in list(events.items()):
                if kiosk_event.kiosk_id not in cabinet_ids:
                    del events[key]
                    rejections.append(_unknown_cabinet(kiosk_event.message, kiosk_event.kiosk_id))

            # Dead letters in arrival order, whichever check rejected them.
            positions = {id(message): index for index, message in enumerate(messages)}
            rejections.sort(key=lambda rejection: positions[id(rejection.message)])
            provider = self._provider_factory(db)
            if events:
                self._store_events(db, list(events.values()), cabinet_ids, provider, result)
            if sales:
                self._store_sales(db, list(sales.values()), cabinet_ids, provider, result)
            if rejections:
                db.execute(
                    _table(DeadLetter).insert(),
                    [dead_letter_row(rejection) for rejection in rejections],
                )

        for sale in duplicate_sales_in_batch:
            if sale.kiosk_id in cabinet_ids:
                result.ack(sale.kiosk_id).sale_ids.append(sale.record.sale_id)
                result.duplicate_sales += 1
        for kiosk_event in duplicate_events_in_batch:
            if kiosk_event.kiosk_id in cabinet_ids:
                result.ack(kiosk_event.kiosk_id).event_ids.append(kiosk_event.event.event_id)
                result.duplicate_events += 1
        result.rejected = len(rejections)
        for rejection in rejections:
            logger.warning(
                "rejected message on %s: %s", rejection.message.topic[:256], rejection.reason
            )
        return result

    def store_rejections(self, rejections: Sequence[Rejection]) -> None:
        """Write dead letters in a transaction of their own."""
        with self._session_factory() as db, db.begin():
            db.execute(
                _table(DeadLetter).insert(),
                [dead_letter_row(rejection) for rejection in rejections],
            )

    # --- Steps of commit --------------------------------------------------------------------

    def _cabinet_ids_for(self, db: Session, kiosk_ids: set[str]) -> dict[str, int]:
        missing = kiosk_ids - self._cabinet_ids.keys()
        if missing:
            rows = db.execute(
                select(Cabinet.kiosk_id, Cabinet.id).where(Cabinet.kiosk_id.in_(missing))
            )
            for kiosk_id, cabinet_id in rows:
                self._cabinet_ids[kiosk_id] = cabinet_id
        return {
            kiosk_id: self._cabinet_ids[kiosk_id]
            for kiosk_id in kiosk_ids
            if kiosk_id in self._cabinet_ids
        }

    def _store_events(
        self,
        db: Session,
        events: list[ValidEvent],
        cabinet_ids: dict[str, int],
        provider: PaymentProvider,
        result: BatchResult,
    ) -> None:
        rows = [
            {
                "kiosk_id": item.kiosk_id,
                "event_id": item.event.event_id,
                "cabinet_id": cabinet_ids[item.kiosk_id],
                "type": item.event.type.value,
                "at": item.event.at,
                "session_id": item.event.session_id,
                "detail": item.event.model_dump(mode="json")["detail"],
                "stock": (
                    None
                    if item.event.stock is None
                    else [line.model_dump(mode="json") for line in item.event.stock]
                ),
                "received_at": item.message.received_at,
            }
            for item in _in_key_order(events)
        ]
        new_rows = bulk_insert(
            db,
            KioskEventRecord,
            rows,
            conflict_columns=["kiosk_id", "event_id"],
            returning=["kiosk_id", "event_id"],
        )
        inserted = {(kiosk_id, str(event_id)) for kiosk_id, event_id in new_rows}
        for item in events:
            result.ack(item.kiosk_id).event_ids.append(item.event.event_id)
            if item.key not in inserted:
                result.duplicate_events += 1
                continue
            result.new_events += 1
            if item.event.type in PURCHASE_EVENT_TYPES:
                apply_cabinet_event(
                    db,
                    provider=provider,
                    event=item.event,
                    cabinet_id=cabinet_ids[item.kiosk_id],
                )
            for handler in self._hooks.event_handlers:
                _run_event_hook(db, handler, item.event, item.message.received_at)

    def _store_sales(
        self,
        db: Session,
        sales: list[ValidSale],
        cabinet_ids: dict[str, int],
        provider: PaymentProvider,
        result: BatchResult,
    ) -> None:
        products = self._catalog_products(db, sales)
        session_ids = {item.record.session_id for item in sales}
        known_sessions = set(
            db.scalars(
                select(PurchaseSession.id).where(matches_any(db, PurchaseSession.id, session_ids))
            )
        )

        rows: list[dict[str, Any]] = []
        initial_reasons: list[list[str]] = []
        for item in _in_key_order(sales):
            record = item.record
            reasons = [str(reason) for reason in record.review.reasons]
            if record.session_id not in known_sessions:
                reasons.append(ServerReviewReason.UNKNOWN_SESSION.value)
            if any(
                parse_planogram_product_id(line.product_id) not in products for line in record.lines
            ):
                reasons.append(ServerReviewReason.UNKNOWN_PRODUCT.value)
            initial_reasons.append(reasons)
            rows.append(
                {
                    "kiosk_id": record.kiosk_id,
                    "sale_id": record.sale_id,
                    "cabinet_id": cabinet_ids[record.kiosk_id],
                    "session_id": record.session_id,
                    "purchase_session_id": None,
                    "outcome": record.outcome,
                    "opened_at": record.opened_at,
                    "closed_at": record.closed_at,
                    "recorded_at": record.recorded_at,
                    "received_at": item.message.received_at,
                    "planogram_version": record.planogram_version,
                    "total_fen": record.total_fen,
                    "captured_fen": 0,
                    "refunded_fen": 0,
                    "review_needed": bool(reasons),
                    "review_reasons": reasons,
                    "shelf_deltas": [delta.model_dump() for delta in record.shelf_deltas],
                }
            )
        new_rows = bulk_insert(
            db,
            Sale,
            rows,
            conflict_columns=["kiosk_id", "sale_id"],
            returning=["id", "kiosk_id", "sale_id"],
        )
        inserted = {(kiosk_id, str(sale_id)): sale_pk for sale_pk, kiosk_id, sale_id in new_rows}

        new_sales: list[tuple[int, ValidSale, list[str]]] = []
        for item, reasons in zip(_in_key_order(sales), initial_reasons, strict=True):
            result.ack(item.kiosk_id).sale_ids.append(item.record.sale_id)
            sale_pk = inserted.get(item.key)
            if sale_pk is None:
                result.duplicate_sales += 1
            else:
                result.new_sales += 1
                new_sales.append((sale_pk, item, reasons))
        if not new_sales:
            return

        self._insert_lines(db, new_sales, products)
        captured = self._settle(db, new_sales, cabinet_ids, known_sessions, provider)
        self._post_procurement(db, new_sales, cabinet_ids, products, captured)
        received = [(item.record, item.message.received_at) for _, item, _ in new_sales]
        for handler in self._hooks.sale_handlers:
            _run_sale_hook(db, handler, received)

    def _catalog_products(self, db: Session, sales: list[ValidSale]) -> dict[int, _CatalogProduct]:
        product_ids = {
            parse_planogram_product_id(line.product_id)
            for item in sales
            for line in item.record.lines
        }
        product_ids.discard(None)
        if not product_ids:
            return {}
        rows = db.execute(
            select(
                Product.id,
                Product.name,
                Product.source_county_id,
                Product.valid_from,
                Product.valid_until,
            ).where(Product.id.in_(product_ids))
        )
        return {
            row.id: _CatalogProduct(
                row.id,
                row.name,
                row.source_county_id,
                CertifiedProduct(row.id, row.source_county_id, row.valid_from, row.valid_until),
            )
            for row in rows
        }

    def _insert_lines(
        self,
        db: Session,
        new_sales: list[tuple[int, ValidSale, list[str]]],
        products: dict[int, _CatalogProduct],
    ) -> None:
        rows = []
        for sale_pk, item, _ in new_sales:
            for line_no, line in enumerate(item.record.lines, start=1):
                product = products.get(parse_planogram_product_id(line.product_id) or -1)
                rows.append(
                    {
                        "sale_pk": sale_pk,
                        "line_no": line_no,
                        "product_ref": line.product_id,
                        "product_id": product.id if product else None,
                        "product_name": product.name if product else line.product_id,
                        "source_county_id": product.source_county_id if product else None,
                        "shelf": line.shelf,
                        "quantity": line.quantity,
                        "unit_price_fen": line.unit_price_fen,
                        "amount_fen": line.amount_fen,
                        "refunded_quantity": 0,
                    }
                )
        bulk_insert(db, SaleLine, rows)

    def _settle(
        self,
        db: Session,
        new_sales: list[tuple[int, ValidSale, list[str]]],
        cabinet_ids: dict[str, int],
        known_sessions: set[uuid.UUID],
        provider: PaymentProvider,
    ) -> dict[int, int]:
        """Settle the sales that name a purchase session; return sale pk -> captured fen."""
        with_session = [
            entry for entry in new_sales if entry[1].record.session_id in known_sessions
        ]
        if not with_session:
            return {}
        purchase_ids = {item.record.session_id for _, item, _ in with_session}
        purchases = lock_purchases(db, purchase_ids)
        provider.lock_holds([purchase.hold_id for purchase in purchases.values()])
        settled = settled_purchase_ids(db, purchase_ids)

        updates: list[dict[str, Any]] = []
        captured: dict[int, int] = {}
        for sale_pk, item, reasons in with_session:
            record = item.record
            purchase = purchases.get(record.session_id)
            settlement = settle_sale(
                db,
                provider=provider,
                record=record,
                cabinet_id=cabinet_ids[record.kiosk_id],
                purchase=purchase,
                already_settled=record.session_id in settled,
            )
            if settlement.purchase_session_id is not None:
                settled.add(settlement.purchase_session_id)
            captured[sale_pk] = settlement.captured_fen
            all_reasons = reasons + [reason.value for reason in settlement.review_reasons]
            updates.append(
                {
                    "b_pk": sale_pk,
                    "b_purchase": settlement.purchase_session_id,
                    "b_captured": settlement.captured_fen,
                    "b_needed": bool(all_reasons),
                    "b_reasons": all_reasons,
                }
            )
        table = _table(Sale)
        db.flush()
        db.execute(
            update(table)
            .where(table.c.id == bindparam("b_pk"))
            .values(
                purchase_session_id=bindparam("b_purchase"),
                captured_fen=bindparam("b_captured"),
                review_needed=bindparam("b_needed"),
                review_reasons=bindparam("b_reasons"),
            ),
            updates,
        )
        return captured

    def _post_procurement(
        self,
        db: Session,
        new_sales: list[tuple[int, ValidSale, list[str]]],
        cabinet_ids: dict[str, int],
        products: dict[int, _CatalogProduct],
        captured: dict[int, int],
    ) -> None:
        """Post the new sales to their schools' procurement totals."""
        schools = cabinet_schools(db, {cabinet_ids[item.kiosk_id] for _, item, _ in new_sales})
        county_codes = current_county_codes(db)
        postings = []
        for sale_pk, item, _ in new_sales:
            school_id = schools.get(cabinet_ids[item.kiosk_id])
            if school_id is None:
                continue
            lines = []
            for line in item.record.lines:
                product = products.get(parse_planogram_product_id(line.product_id) or -1)
                lines.append(
                    PricedLine(
                        product.certified if product else None, line.amount_fen, line.quantity
                    )
                )
            postings.extend(
                sale_postings(
                    school_id=school_id,
                    recorded_at=item.record.recorded_at,
                    lines=lines,
                    captured_fen=captured.get(sale_pk, 0),
                    county_codes=county_codes,
                )
            )
        post(db, postings)


ValidT = TypeVar("ValidT", ValidSale, ValidEvent)


def _in_key_order(items: list[ValidT]) -> list[ValidT]:
    """Return the items sorted by (kiosk_id, id), the order in which rows are inserted.

    Two workers that insert the same keys (a resent sale that reached both) then wait for
    each other in one order, so they cannot deadlock. Hooks still run in arrival order.
    """
    return sorted(items, key=lambda item: item.key)


def _run_sale_hook(
    db: Session, handler: SaleHandler, sales: Sequence[tuple[SaleRecord, datetime]]
) -> None:
    try:
        with db.begin_nested():
            handler(db, sales)
    except Exception:
        logger.exception(
            "ingest hook %r failed on a batch of %d new sales; its changes are rolled back",
            handler,
            len(sales),
        )


def _run_event_hook(
    db: Session, handler: EventHandler, kiosk_event: KioskEvent, received_at: datetime
) -> None:
    try:
        with db.begin_nested():
            handler(db, kiosk_event, received_at)
    except Exception:
        logger.exception(
            "ingest hook %r failed on event %s; its changes are rolled back",
            handler,
            kiosk_event.event_id,
        )
