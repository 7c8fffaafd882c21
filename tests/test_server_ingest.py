"""Ingest batches: validation, de-duplication, dead letters, hooks and acknowledgements.

These tests call BatchStore.commit directly on both database backends; the tests of the
MQTT side (real broker, several worker processes) are in test_server_ingest_workers.
"""

import json
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.db import create_db_engine
from fleet_server.core.migrate import alembic_config
from fleet_server.ingest.messages import ReceivedMessage
from fleet_server.ingest.store import BatchStore, IngestHooks, payload_excerpt
from fleet_server.ingest.worker import ack_messages
from fleet_server.models import (
    Base,
    DeadLetter,
    KioskEventRecord,
    Sale,
    SaleLine,
)
from fleet_server.models.base import utc_now
from fleet_server.models.ingest import DEAD_LETTER_EXCERPT_BYTES
from kiosk_agent.contract import (
    MAX_LIST_ITEMS,
    Channel,
    EventType,
    KioskEvent,
    SaleOutcome,
    encode_payload,
    kiosk_topic,
)
from purchase_helpers import Shop, kiosk_event, received, sale_record

pytest_plugins = ["server_fixtures", "purchase_fixtures"]


def raw(kiosk_id: str, channel: Channel, payload: bytes) -> ReceivedMessage:
    return ReceivedMessage(kiosk_topic(kiosk_id, channel), payload, utc_now())


def count(session: Session, model: type[object]) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model)) or 0  # type: ignore[arg-type]


def test_sale_stored_with_counties(shop: Shop, seeded: sessionmaker[Session]) -> None:
    tea, crisps = shop.products
    record = sale_record(
        shop.kiosk_id,
        uuid.uuid4(),
        [(tea, 2, 350, 0), (crisps, 1, 590, 3)],
        review_reasons=["ambiguous_weight"],
    )

    result = BatchStore(seeded).commit([received(record)])

    assert result.new_sales == 1
    assert result.acks[shop.kiosk_id].sale_ids == [record.sale_id]
    with seeded() as session:
        sale = session.scalars(sa.select(Sale)).one()
        assert sale.kiosk_id == shop.kiosk_id
        assert sale.sale_id == record.sale_id
        assert sale.outcome is SaleOutcome.COMPLETED
        assert sale.total_fen == 1_290
        assert sale.captured_fen == 0
        assert sale.review_needed is True
        assert sale.review_reasons == ["ambiguous_weight", "unknown_session"]
        assert sale.shelf_deltas[0] == {"shelf": 0, "before_mg": 5_000_000, "after_mg": 4_500_000}
        lines = session.scalars(sa.select(SaleLine).order_by(SaleLine.line_no)).all()
        assert [
            (line.product_id, line.quantity, line.unit_price_fen, line.amount_fen) for line in lines
        ] == [
            (tea.id, 2, 350, 700),
            (crisps.id, 1, 590, 590),
        ]
        assert [line.source_county_id for line in lines] == [tea.county_id, crisps.county_id]
        assert [line.product_name for line in lines] == [tea.name, crisps.name]
        assert [line.shelf for line in lines] == [0, 3]


def test_duplicates_stored_once_acked_always(shop: Shop, seeded: sessionmaker[Session]) -> None:
    store = BatchStore(seeded)
    record = sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 1, 350, 0)])
    event = kiosk_event(shop.kiosk_id, EventType.DOOR_FORCED, detail={"door": 0})

    first = store.commit([received(record), received(record), received(event), received(event)])
    second = store.commit([received(record), received(event)])

    assert first.new_sales == 1
    assert first.duplicate_sales == 1
    assert first.new_events == 1
    assert first.duplicate_events == 1
    assert first.acks[shop.kiosk_id].sale_ids == [record.sale_id, record.sale_id]
    assert second.new_sales == 0
    assert second.duplicate_sales == 1
    assert second.duplicate_events == 1
    assert second.acks[shop.kiosk_id].sale_ids == [record.sale_id]
    assert second.acks[shop.kiosk_id].event_ids == [event.event_id]
    with seeded() as session:
        assert count(session, Sale) == 1
        assert count(session, SaleLine) == 1
        assert count(session, KioskEventRecord) == 1


def test_same_sale_id_two_cabinets(shop: Shop, seeded: sessionmaker[Session]) -> None:
    sale_id = uuid.uuid4()
    records = [
        sale_record(kiosk_id, uuid.uuid4(), [(shop.products[0], 1, 350, 0)], sale_id=sale_id)
        for kiosk_id in (shop.kiosk_id, shop.other_kiosk_id)
    ]

    result = BatchStore(seeded).commit([received(record) for record in records])

    assert result.new_sales == 2
    with seeded() as session:
        assert count(session, Sale) == 2


def test_bad_messages_become_dead_letters(shop: Shop, seeded: sessionmaker[Session]) -> None:
    good = sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 1, 350, 0)])
    document = json.loads(encode_payload(good))
    document["sale_id"] = str(uuid.uuid4())
    document["lines"][0]["unit_price_fen"] = 350.0
    float_price = json.dumps(document).encode()
    messages = [
        raw(shop.kiosk_id, Channel.SALES, b'{"v": 1, "sale_id": '),
        float_price and raw(shop.kiosk_id, Channel.SALES, float_price),
        received(sale_record(shop.other_kiosk_id, uuid.uuid4()), kiosk_id=shop.kiosk_id),
        received(sale_record("AH-00000-0000", uuid.uuid4())),
        received(kiosk_event("AH-00000-0000", EventType.DOOR_FORCED)),
        ReceivedMessage("zhigui/v1/kiosks/no/such/topic", b"{}", utc_now()),
        raw(shop.kiosk_id, Channel.TELEMETRY, b"{}"),
        received(good),
    ]

    result = BatchStore(seeded).commit(messages)

    assert result.rejected == 7
    assert result.new_sales == 1
    assert result.acks == {shop.kiosk_id: result.acks[shop.kiosk_id]}
    assert result.acks[shop.kiosk_id].sale_ids == [good.sale_id]
    with seeded() as session:
        letters = session.scalars(sa.select(DeadLetter).order_by(DeadLetter.id)).all()
        reasons = [letter.reason for letter in letters]
        kiosks = [letter.kiosk_id for letter in letters]
    assert "not valid JSON" in reasons[0]
    assert "lines.0.unit_price_fen" in reasons[1]
    assert "differs from the topic" in reasons[2]
    assert "unknown cabinet" in reasons[3]
    assert "unknown cabinet" in reasons[4]
    assert "not of the form" in reasons[5]
    assert "telemetry is not ingested" in reasons[6]
    assert kiosks == [
        shop.kiosk_id,
        shop.kiosk_id,
        shop.kiosk_id,
        "AH-00000-0000",
        "AH-00000-0000",
        None,
        shop.kiosk_id,
    ]
    assert letters[0].payload_excerpt == '{"v": 1, "sale_id": '
    assert letters[0].payload_bytes == 20


def test_dead_letter_excerpt_bounded() -> None:
    huge = b"\x00\xff" + "产".encode() * 5_000

    excerpt = payload_excerpt(huge)

    assert len(excerpt.encode()) <= DEAD_LETTER_EXCERPT_BYTES
    assert excerpt.startswith("\\x00\\xff产")
    assert "\x00" not in excerpt


def test_sale_amount_overflow_rejected(shop: Shop, seeded: sessionmaker[Session]) -> None:
    record = sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 2**30, 4, 0)])

    result = BatchStore(seeded).commit([received(record)])

    assert result.rejected == 1
    assert result.acks == {}
    with seeded() as session:
        assert count(session, Sale) == 0
        letter = session.scalars(sa.select(DeadLetter)).one()
        assert "exceeds" in letter.reason


def test_unknown_product_flagged(shop: Shop, seeded: sessionmaker[Session]) -> None:
    record = sale_record(shop.kiosk_id, uuid.uuid4(), [("jinzhai-green-tea-250g", 1, 350, 0)])

    BatchStore(seeded).commit([received(record)])

    with seeded() as session:
        sale = session.scalars(sa.select(Sale)).one()
        line = session.scalars(sa.select(SaleLine)).one()
    assert sale.review_reasons == ["unknown_session", "unknown_product"]
    assert line.product_id is None
    assert line.source_county_id is None
    assert line.product_name == "jinzhai-green-tea-250g"
    assert line.product_ref == "jinzhai-green-tea-250g"


def test_barcode_product_id_flagged_unknown(shop: Shop, seeded: sessionmaker[Session]) -> None:
    """Digits beyond products.id's 32-bit range name no product; the batch still commits."""
    good = sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 1, 350, 0)])
    barcodes = [
        sale_record(shop.kiosk_id, uuid.uuid4(), [(digits, 1, 350, 0)])
        for digits in ("2147483648", "6901234567890", "9" * 20)
    ]

    result = BatchStore(seeded).commit([received(good), *map(received, barcodes)])

    assert result.new_sales == 4
    assert result.rejected == 0
    with seeded() as session:
        lines = session.scalars(sa.select(SaleLine).where(SaleLine.product_id.is_(None))).all()
    assert sorted(line.product_ref for line in lines) == ["2147483648", "6901234567890", "9" * 20]


def test_nul_and_far_future_rejected(shop: Shop, seeded: sessionmaker[Session]) -> None:
    """Messages PostgreSQL or the report dates cannot take become dead letters, not failures."""
    good = sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 1, 350, 0)])
    nul_event = kiosk_event(shop.kiosk_id, EventType.DOOR_FORCED, detail={"note": "a\x00b"})
    late = sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 1, 350, 0)])
    late = late.model_copy(update={"recorded_at": datetime(9999, 12, 31, 23, 59, tzinfo=UTC)})
    late_event = kiosk_event(shop.kiosk_id, EventType.DOOR_FORCED)
    late_event = late_event.model_copy(update={"at": datetime(9000, 1, 1, tzinfo=UTC)})
    escaped = kiosk_event(shop.kiosk_id, EventType.DOOR_FORCED, detail={"note": "\\u0000"})

    result = BatchStore(seeded).commit(
        [
            received(nul_event),
            received(late),
            received(late_event),
            received(good),
            received(escaped),
        ]
    )

    assert result.rejected == 3
    assert result.new_sales == 1
    assert result.new_events == 1
    with seeded() as session:
        letters = session.scalars(sa.select(DeadLetter).order_by(DeadLetter.id)).all()
        stored = session.scalars(sa.select(KioskEventRecord)).one()
    assert "NUL character" in letters[0].reason
    assert "recorded_at 9999-12-31T23:59:00+00:00 is out of range" in letters[1].reason
    assert "at 9000-01-01T00:00:00+00:00 is out of range" in letters[2].reason
    assert [letter.kiosk_id for letter in letters] == [shop.kiosk_id] * 3
    assert stored.detail == {"note": "\\u0000"}


def test_events_stored_and_hooked(shop: Shop, seeded: sessionmaker[Session]) -> None:
    seen: list[tuple[str, datetime]] = []

    def record_event(db: Session, event: KioskEvent, received_at: datetime) -> None:
        seen.append((event.type.value, received_at))

    def broken_hook(db: Session, event: KioskEvent, received_at: datetime) -> None:
        db.add(
            DeadLetter(
                topic="hook",
                reason="x",
                payload_excerpt="",
                payload_bytes=0,
                received_at=received_at,
            )
        )
        db.flush()
        raise RuntimeError("monitoring bug")

    sales_seen: list[uuid.UUID] = []
    hooks = IngestHooks(
        event_handlers=[broken_hook, record_event],
        sale_handlers=[lambda db, sales: sales_seen.extend(sale.sale_id for sale, _ in sales)],
    )
    store = BatchStore(seeded, hooks=hooks)
    restock = KioskEvent(
        event_id=uuid.uuid4(),
        kiosk_id=shop.kiosk_id,
        type=EventType.RESTOCK,
        at=utc_now(),
        detail={"operator": "staff-7"},
        stock=[{"shelf": 0, "product_id": shop.products[0].contract_id, "quantity": 12}],
    )
    forced = kiosk_event(shop.kiosk_id, EventType.DOOR_FORCED, detail={"door": 1})
    sale = sale_record(shop.kiosk_id, uuid.uuid4())

    store.commit([received(restock), received(forced), received(sale)])
    store.commit([received(forced), received(sale)])

    assert [event_type for event_type, _ in seen] == ["restock", "door_forced"]
    assert sales_seen == [sale.sale_id]
    with seeded() as session:
        rows = session.scalars(sa.select(KioskEventRecord).order_by(KioskEventRecord.id)).all()
        assert count(session, DeadLetter) == 0, "the failing hook's changes were rolled back"
    # Rows are inserted in key order, not arrival order, so look them up by type.
    by_type = {row.type: row for row in rows}
    assert sorted(by_type) == ["door_forced", "restock"]
    assert len(rows) == 2
    assert by_type["restock"].stock == [
        {"shelf": 0, "product_id": shop.products[0].contract_id, "quantity": 12}
    ]
    assert by_type["restock"].detail == {"operator": "staff-7"}
    assert by_type["door_forced"].detail == {"door": 1}


def test_cabinet_ids_cached_after_lookup(shop: Shop, seeded: sessionmaker[Session]) -> None:
    """A cabinet registered after the worker started is found on its first message."""
    store = BatchStore(seeded)
    unknown = store.commit([received(sale_record("AH-10357-0009", uuid.uuid4()))])
    with seeded() as session, session.begin():
        from fleet_server.models import Cabinet

        template = session.scalars(
            sa.select(Cabinet).where(Cabinet.kiosk_id == shop.kiosk_id)
        ).one()
        session.add(
            Cabinet(
                kiosk_id="AH-10357-0009",
                placement_id=template.placement_id,
                operator_id=template.operator_id,
            )
        )

    known = store.commit([received(sale_record("AH-10357-0009", uuid.uuid4()))])

    assert unknown.rejected == 1
    assert known.new_sales == 1


def test_acks_split_at_list_limit() -> None:
    sale_ids = [uuid.uuid4() for _ in range(MAX_LIST_ITEMS + 5)]
    event_ids = [uuid.uuid4() for _ in range(3)]

    acks = ack_messages(sale_ids, event_ids)

    assert [len(ack.sale_ids) for ack in acks] == [MAX_LIST_ITEMS, 5]
    assert [len(ack.event_ids) for ack in acks] == [3, 0]
    assert [sale_id for ack in acks for sale_id in ack.sale_ids] == sale_ids


def test_sale_payload_roundtrip_is_exact(shop: Shop, seeded: sessionmaker[Session]) -> None:
    """Timestamps keep microseconds and UTC through the database on both backends."""
    record = sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 1, 1, 0)])

    BatchStore(seeded).commit([received(record)])

    with seeded() as session:
        sale = session.scalars(sa.select(Sale)).one()
    assert sale.recorded_at == record.recorded_at
    assert sale.opened_at == record.opened_at
    assert sale.closed_at == record.closed_at


PURCHASE_TABLES = {
    "wallets",
    "payment_holds",
    "wallet_transactions",
    "purchase_sessions",
    "sales",
    "sale_lines",
    "sale_refunds",
    "kiosk_events",
    "dead_letters",
}


def _table_of(difference: object) -> str | None:
    """Return the table a compare_metadata difference concerns."""
    if isinstance(difference, list):
        return _table_of(difference[0])
    assert isinstance(difference, tuple)
    for part in difference[1:]:
        if isinstance(part, sa.Table):
            return part.name
        if isinstance(part, sa.Index | sa.UniqueConstraint | sa.ForeignKeyConstraint):
            return part.table.name
        if isinstance(part, str) and part in PURCHASE_TABLES:
            return part
    return None


def test_migration_matches_purchase_models(database_url: str) -> None:
    config = alembic_config(database_url)

    command.upgrade(config, "0002_purchases")

    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
        assert [d for d in differences if _table_of(d) in PURCHASE_TABLES] == []
        assert set(sa.inspect(engine).get_table_names()) >= PURCHASE_TABLES
        command.downgrade(config, "0001")
        assert not PURCHASE_TABLES & set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
