"""MQTT contract: topics, payload round trips, and rejection of malformed payloads."""

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk_agent.contract import (
    ERROR_EXCERPT_CHARS,
    MAX_PAYLOAD_BYTES,
    Ack,
    Channel,
    ContractError,
    DoorPosition,
    DoorTelemetry,
    EventType,
    KioskEvent,
    KioskState,
    KioskStatus,
    LockState,
    OutboxBacklog,
    Payload,
    PlanogramCommand,
    PlanogramProduct,
    PlanogramShelf,
    Review,
    ReviewReason,
    SaleLine,
    SaleOutcome,
    SaleRecord,
    SerialLinkState,
    ShelfDelta,
    ShelfTelemetry,
    StockLine,
    Telemetry,
    UnlockCommand,
    UnlockMode,
    encode_payload,
    fleet_topic_filter,
    format_utc,
    kiosk_topic,
    parse_command,
    parse_kiosk_topic,
    parse_payload,
    shared_subscription,
    validate_kiosk_id,
)

NOW = datetime(2024, 5, 6, 8, 30, 15, 123456, tzinfo=UTC)


def make_sale(**changes: Any) -> SaleRecord:
    fields: dict[str, Any] = {
        "sale_id": uuid.UUID("00000000-0000-4000-8000-000000000001"),
        "kiosk_id": "hfut-dorm3-01",
        "session_id": uuid.UUID("00000000-0000-4000-8000-000000000002"),
        "outcome": SaleOutcome.COMPLETED,
        "opened_at": NOW,
        "closed_at": NOW + timedelta(seconds=20),
        "recorded_at": NOW + timedelta(seconds=25),
        "lines": [
            SaleLine(product_id="tea-huangshan-250g", quantity=2, unit_price_fen=3500, shelf=0),
            SaleLine(product_id="rice-jinzhai-1kg", quantity=1, unit_price_fen=1290, shelf=2),
        ],
        "review": Review(needed=True, reasons=[ReviewReason.AMBIGUOUS_WEIGHT.value]),
        "shelf_deltas": [
            ShelfDelta(shelf=0, before_mg=2_000_000, after_mg=1_500_000),
            ShelfDelta(shelf=2, before_mg=5_000_000, after_mg=4_000_000),
        ],
        "planogram_version": 7,
    }
    fields.update(changes)
    return SaleRecord(**fields)


def make_event(**changes: Any) -> KioskEvent:
    fields: dict[str, Any] = {
        "event_id": uuid.UUID("00000000-0000-4000-8000-000000000003"),
        "kiosk_id": "hfut-dorm3-01",
        "type": EventType.SCALE_FAULT,
        "at": NOW,
        "detail": {"shelf": 3, "code": "disconnected", "retry": True, "history": [1, 2, None]},
    }
    fields.update(changes)
    return KioskEvent(**fields)


def make_telemetry() -> Telemetry:
    return Telemetry(
        kiosk_id="hfut-dorm3-01",
        sent_at=NOW,
        doors=[DoorTelemetry(door=0, lock=LockState.LOCKED, position=DoorPosition.CLOSED)],
        shelves=[
            ShelfTelemetry(shelf=0, weight_mg=1_500_000, stable=True, fault=False),
            ShelfTelemetry(shelf=1, weight_mg=-120, stable=False, fault=True),
        ],
        backlog=OutboxBacklog(sales=2, events=1, oldest_created_at=NOW),
        firmware_version="1.4.2",
        agent_version="0.1.0",
        serial_link=SerialLinkState.UP,
        session_state="idle",
        planogram_version=7,
        disk_free_bytes=512 * 1024 * 1024,
    )


def make_unlock(**changes: Any) -> UnlockCommand:
    fields: dict[str, Any] = {
        "command_id": uuid.UUID("00000000-0000-4000-8000-000000000004"),
        "kiosk_id": "hfut-dorm3-01",
        "issued_at": NOW,
        "expires_at": NOW + timedelta(seconds=10),
        "nonce": "0123456789abcdef0123456789abcdef",
        "signature": "ab" * 32,
        "session_id": uuid.UUID("00000000-0000-4000-8000-000000000002"),
        "door": 0,
        "mode": UnlockMode.PURCHASE,
    }
    fields.update(changes)
    return UnlockCommand(**fields)


def make_planogram() -> PlanogramCommand:
    return PlanogramCommand(
        command_id=uuid.UUID("00000000-0000-4000-8000-000000000005"),
        kiosk_id="hfut-dorm3-01",
        issued_at=NOW,
        expires_at=NOW + timedelta(minutes=10),
        nonce="fedcba9876543210fedcba9876543210",
        version=8,
        shelves=[
            PlanogramShelf(
                shelf=0,
                capacity_items=20,
                products=[
                    PlanogramProduct(
                        product_id="tea-huangshan-250g",
                        name="黄山毛峰 250g",
                        unit_weight_mg=262_000,
                        tolerance_mg=4_000,
                        price_fen=3500,
                    )
                ],
            )
        ],
    )


def sale_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(encode_payload(make_sale()))
    return document


def to_bytes(document: object) -> bytes:
    return json.dumps(document).encode()


# --- Topics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", list(Channel), ids=lambda channel: channel.value)
def test_kiosk_topic_round_trips(channel: Channel) -> None:
    topic = kiosk_topic("hfut-dorm3-01", channel)

    assert topic == f"zhigui/v1/kiosks/hfut-dorm3-01/{channel.value}"
    assert parse_kiosk_topic(topic) == ("hfut-dorm3-01", channel)


@pytest.mark.parametrize(
    "kiosk_id",
    ["", "a/b", "a+b", "a#", "+", "#", "-leading-dash", "_leading", "k" * 65, "柜1", "a b", "a\n"],
)
def test_kiosk_id_invalid_rejected(kiosk_id: str) -> None:
    with pytest.raises(ContractError, match="invalid kiosk id"):
        validate_kiosk_id(kiosk_id)
    with pytest.raises(ContractError):
        kiosk_topic(kiosk_id, Channel.SALES)


@pytest.mark.parametrize("kiosk_id", ["K", "0", "hfut_dorm3-01", "k" * 64])
def test_kiosk_id_valid_accepted(kiosk_id: str) -> None:
    assert validate_kiosk_id(kiosk_id) == kiosk_id


@pytest.mark.parametrize(
    "topic",
    [
        "zhigui/v1/kiosks/K1",
        "zhigui/v1/kiosks/K1/sales/extra",
        "zhigui/v1/kiosks/K1/unknown",
        "zhigui/v2/kiosks/K1/sales",
        "zhigui/v1/kiosks/+/sales",
        "other/K1/sales",
    ],
)
def test_parse_kiosk_topic_invalid_rejected(topic: str) -> None:
    with pytest.raises(ContractError):
        parse_kiosk_topic(topic)


def test_fleet_and_shared_subscription_filters() -> None:
    assert fleet_topic_filter(Channel.EVENTS) == "zhigui/v1/kiosks/+/events"
    assert shared_subscription("ingest") == "$share/ingest/zhigui/v1/kiosks/+/sales"
    assert (
        shared_subscription("ingest", Channel.EVENTS) == "$share/ingest/zhigui/v1/kiosks/+/events"
    )
    with pytest.raises(ContractError, match="shared-subscription group"):
        shared_subscription("a/b")


# --- Round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(make_sale(), id="sale"),
        pytest.param(
            make_sale(
                outcome=SaleOutcome.DOOR_NOT_OPENED,
                opened_at=None,
                closed_at=None,
                lines=[],
                review=Review(),
                shelf_deltas=[],
            ),
            id="sale-door-not-opened",
        ),
        pytest.param(make_event(), id="event"),
        pytest.param(
            make_event(
                type=EventType.RESTOCK,
                detail={},
                stock=[StockLine(shelf=0, product_id="tea-huangshan-250g", quantity=12)],
            ),
            id="event-restock",
        ),
        pytest.param(make_telemetry(), id="telemetry"),
        pytest.param(
            KioskStatus(
                kiosk_id="hfut-dorm3-01", state=KioskState.ONLINE, since=NOW, agent_version="0.1"
            ),
            id="status",
        ),
        pytest.param(
            KioskStatus(
                kiosk_id="hfut-dorm3-01", state=KioskState.OFFLINE, since=None, agent_version="0.1"
            ),
            id="status-will",
        ),
        pytest.param(
            Ack(sale_ids=[uuid.uuid4()], event_ids=[uuid.uuid4(), uuid.uuid4()]), id="ack"
        ),
    ],
)
def test_payload_round_trips(payload: Payload) -> None:
    raw = encode_payload(payload)

    assert parse_payload(type(payload), raw) == payload


@pytest.mark.parametrize(
    "command",
    [pytest.param(make_unlock(), id="unlock"), pytest.param(make_planogram(), id="planogram")],
)
def test_command_round_trips_by_type(command: UnlockCommand | PlanogramCommand) -> None:
    parsed = parse_command(encode_payload(command))

    assert type(parsed) is type(command)
    assert parsed == command


def test_planogram_name_keeps_chinese_text() -> None:
    raw = encode_payload(make_planogram())

    parsed = parse_command(raw)

    assert isinstance(parsed, PlanogramCommand)
    assert parsed.shelves[0].products[0].name == "黄山毛峰 250g"


def test_timestamps_serialized_as_utc_with_z() -> None:
    document = sale_document()

    assert document["recorded_at"] == "2024-05-06T08:30:40.123456Z"
    assert format_utc(datetime(2024, 5, 6, 16, 30, tzinfo=timezone(timedelta(hours=8)))) == (
        "2024-05-06T08:30:00.000000Z"
    )


def test_offset_timestamp_normalized_to_utc() -> None:
    document = sale_document()
    document["recorded_at"] = "2024-05-06T16:30:40.123456+08:00"

    sale = parse_payload(SaleRecord, to_bytes(document))

    assert sale.recorded_at == datetime(2024, 5, 6, 8, 30, 40, 123456, tzinfo=UTC)
    assert sale.recorded_at.utcoffset() == timedelta(0)


def test_sale_total_is_integer_fen() -> None:
    sale = make_sale()

    assert sale.total_fen == 2 * 3500 + 1290
    assert isinstance(sale.total_fen, int)


uuids = st.uuids(version=4)
utc_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
product_ids = st.from_regex(r"\A[a-z0-9][a-z0-9_.:-]{0,20}\Z")
sale_lines = st.builds(
    SaleLine,
    product_id=product_ids,
    quantity=st.integers(1, 1000),
    unit_price_fen=st.integers(0, 2**31 - 1),
    shelf=st.integers(0, 255),
)


@st.composite
def sales(draw: st.DrawFn) -> SaleRecord:
    lines = draw(
        st.lists(sale_lines, max_size=6, unique_by=lambda line: (line.shelf, line.product_id))
    )
    reasons = draw(st.lists(st.sampled_from([reason.value for reason in ReviewReason]), max_size=3))
    deltas = draw(
        st.lists(
            st.builds(
                ShelfDelta,
                shelf=st.integers(0, 255),
                before_mg=st.integers(-(2**31), 2**31 - 1),
                after_mg=st.integers(-(2**31), 2**31 - 1),
            ),
            max_size=4,
            unique_by=lambda delta: delta.shelf,
        )
    )
    opened_at = draw(utc_datetimes)
    return SaleRecord(
        sale_id=draw(uuids),
        kiosk_id=draw(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")),
        session_id=draw(uuids),
        outcome=SaleOutcome.COMPLETED,
        opened_at=opened_at,
        closed_at=opened_at + draw(st.timedeltas(timedelta(0), timedelta(hours=1))),
        recorded_at=draw(utc_datetimes),
        lines=lines,
        review=Review(needed=bool(reasons), reasons=reasons),
        shelf_deltas=deltas,
        planogram_version=draw(st.integers(1, 2**31 - 1)),
    )


@given(sales())
def test_sale_round_trips_property(sale: SaleRecord) -> None:
    assert parse_payload(SaleRecord, encode_payload(sale)) == sale


# --- Rejection ------------------------------------------------------------------------------


def mutate(path: list[str | int], value: object) -> bytes:
    """Return the sample sale's JSON with the value at ``path`` replaced (or added)."""
    document = sale_document()
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return to_bytes(document)


def remove(path: list[str | int]) -> bytes:
    document = sale_document()
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return to_bytes(document)


REJECTED_SALES = [
    pytest.param(b"{", "not valid JSON", id="truncated-json"),
    pytest.param(b"\xff\xfe{}", "not valid JSON (invalid UTF-8 at byte 0)", id="invalid-utf8"),
    pytest.param(
        b'\x00\x00{"v": 1}',
        "not valid JSON (Expecting value: line 1 column 1 (char 0))",
        id="leading-nul-bytes",
    ),
    pytest.param(b"[]", "expected a JSON object", id="array"),
    pytest.param(b'"sale"', "expected a JSON object", id="string"),
    pytest.param(remove(["v"]), "missing version", id="missing-version"),
    pytest.param(mutate(["v"], 2), "unsupported payload version 2", id="version-2"),
    pytest.param(mutate(["v"], True), "unsupported payload version True", id="version-true"),
    pytest.param(mutate(["v"], "1"), "unsupported payload version", id="version-string"),
    pytest.param(mutate(["lines", 0, "unit_price_fen"], 35.0), "unit_price_fen", id="float-money"),
    pytest.param(
        mutate(["lines", 0, "unit_price_fen"], 35.5), "unit_price_fen", id="fraction-money"
    ),
    pytest.param(
        mutate(["lines", 0, "unit_price_fen"], "3500"), "unit_price_fen", id="string-money"
    ),
    pytest.param(mutate(["lines", 0, "unit_price_fen"], -1), "unit_price_fen", id="negative-money"),
    pytest.param(mutate(["lines", 0, "unit_price_fen"], 2**31), "unit_price_fen", id="huge-money"),
    pytest.param(mutate(["lines", 0, "quantity"], 0), "quantity", id="zero-quantity"),
    pytest.param(mutate(["lines", 0, "quantity"], True), "quantity", id="bool-quantity"),
    pytest.param(mutate(["shelf_deltas", 0, "after_mg"], 1.5e6), "after_mg", id="float-weight"),
    pytest.param(mutate(["extra"], 1), "Extra inputs", id="extra-field"),
    pytest.param(mutate(["lines", 0, "discount_fen"], 1), "Extra inputs", id="extra-nested"),
    pytest.param(remove(["sale_id"]), "sale_id", id="missing-sale-id"),
    pytest.param(mutate(["sale_id"], "not-a-uuid"), "sale_id", id="bad-uuid"),
    pytest.param(mutate(["kiosk_id"], "a/b"), "kiosk_id", id="kiosk-id-with-slash"),
    pytest.param(mutate(["outcome"], "stolen"), "outcome", id="unknown-outcome"),
    pytest.param(mutate(["recorded_at"], "2024-05-06T08:30:00"), "timezone", id="naive-time"),
    pytest.param(mutate(["recorded_at"], 1714984200), "recorded_at", id="epoch-time"),
    pytest.param(mutate(["review", "reasons"], []), "at least one reason", id="review-no-reason"),
    pytest.param(mutate(["review", "reasons"], ["Bad Code"]), "reasons", id="review-bad-code"),
    pytest.param(
        mutate(["closed_at"], "2024-05-06T08:00:00Z"), "earlier than opened_at", id="closed-first"
    ),
    pytest.param(mutate(["outcome"], "nothing_taken"), "no lines", id="lines-when-nothing-taken"),
]


@pytest.mark.parametrize(("raw", "reason_part"), REJECTED_SALES)
def test_malformed_sale_rejected(raw: bytes, reason_part: str) -> None:
    with pytest.raises(ContractError) as error:
        parse_payload(SaleRecord, raw)

    assert reason_part in str(error.value)


def test_duplicate_sale_line_rejected() -> None:
    document = sale_document()
    document["lines"].append(dict(document["lines"][0]))

    with pytest.raises(ContractError, match="duplicate"):
        parse_payload(SaleRecord, to_bytes(document))


def test_json_constants_rejected() -> None:
    raw = encode_payload(make_sale()).replace(b'"planogram_version":7', b'"planogram_version":NaN')

    with pytest.raises(ContractError, match="NaN"):
        parse_payload(SaleRecord, raw)


def test_oversized_payload_rejected_before_parsing() -> None:
    raw = b'{"v":1,"padding":"' + b"x" * MAX_PAYLOAD_BYTES + b'"}'

    with pytest.raises(ContractError, match="exceeds the limit"):
        parse_payload(SaleRecord, raw)


def test_deeply_nested_payload_rejected() -> None:
    raw = b'{"v":1,"detail":' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    with pytest.raises(ContractError):
        parse_payload(KioskEvent, raw)


def test_error_quotes_only_an_excerpt() -> None:
    raw = b'{"v":1,"kiosk_id":"' + b"k" * 10_000 + b'"}'

    with pytest.raises(ContractError) as error:
        parse_payload(SaleRecord, raw)

    assert len(error.value.excerpt) <= ERROR_EXCERPT_CHARS
    assert len(str(error.value)) < 600


def test_error_omits_input_values() -> None:
    raw = mutate(["lines", 0, "product_id"], "secret value with spaces")

    with pytest.raises(ContractError) as error:
        parse_payload(SaleRecord, raw)

    assert "secret value" not in error.value.reason


def test_event_detail_float_rejected() -> None:
    document = json.loads(encode_payload(make_event()))
    document["detail"]["temperature"] = 21.5

    with pytest.raises(ContractError, match="detail"):
        parse_payload(KioskEvent, to_bytes(document))


def test_stock_only_on_restock_event() -> None:
    document = json.loads(encode_payload(make_event()))
    document["stock"] = [{"shelf": 0, "product_id": "tea", "quantity": 1}]

    with pytest.raises(ContractError, match="only allowed on restock"):
        parse_payload(KioskEvent, to_bytes(document))


@pytest.mark.parametrize(
    ("field", "value", "reason_part"),
    [
        ("type", "self_destruct", "does not match any of the expected tags"),
        ("nonce", "XYZ", "nonce"),
        ("nonce", "0123456789ABCDEF0123456789ABCDEF", "nonce"),
        ("signature", "ab" * 31, "signature"),
        ("expires_at", "2024-05-06T08:30:15.123456Z", "later than issued_at"),
        ("expires_at", "2024-05-06T09:30:15.123456Z", "exceeds the maximum"),
        ("door", 255, "door"),
        ("mode", "steal", "mode"),
    ],
)
def test_malformed_unlock_rejected(field: str, value: object, reason_part: str) -> None:
    document = json.loads(encode_payload(make_unlock()))
    document[field] = value

    with pytest.raises(ContractError) as error:
        parse_command(to_bytes(document))

    assert reason_part in str(error.value)


def test_command_without_type_rejected() -> None:
    document = json.loads(encode_payload(make_unlock()))
    del document["type"]

    with pytest.raises(ContractError, match="type"):
        parse_command(to_bytes(document))


def test_planogram_duplicate_shelf_rejected() -> None:
    document = json.loads(encode_payload(make_planogram()))
    document["shelves"].append(document["shelves"][0])

    with pytest.raises(ContractError, match="duplicate shelf"):
        parse_command(to_bytes(document))


PARSERS = [
    pytest.param(lambda raw: parse_payload(SaleRecord, raw), id="sale"),
    pytest.param(lambda raw: parse_payload(KioskEvent, raw), id="event"),
    pytest.param(lambda raw: parse_payload(Ack, raw), id="ack"),
    pytest.param(lambda raw: parse_payload(Telemetry, raw), id="telemetry"),
    pytest.param(parse_command, id="command"),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("parse", PARSERS)
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_contract_error(parse: Any, raw: bytes) -> None:
    with contextlib.suppress(ContractError):
        parse(raw)


def leaf_paths(value: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Return the path of every scalar inside a JSON document."""
    if isinstance(value, dict):
        return [path for key, item in value.items() for path in leaf_paths(item, (*prefix, key))]
    if isinstance(value, list):
        return [
            path for index, item in enumerate(value) for path in leaf_paths(item, (*prefix, index))
        ]
    return [prefix]


@pytest.mark.parametrize(
    ("document", "parse"),
    [
        pytest.param(sale_document(), lambda raw: parse_payload(SaleRecord, raw), id="sale"),
        pytest.param(json.loads(encode_payload(make_unlock())), parse_command, id="unlock"),
        pytest.param(json.loads(encode_payload(make_planogram())), parse_command, id="planogram"),
    ],
)
@given(data=st.data())
def test_mutated_field_raises_only_contract_error(
    document: dict[str, Any], parse: Any, data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(leaf_paths(document)))
    mutated = json.loads(json.dumps(document))
    target: Any = mutated
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(json_values)

    with contextlib.suppress(ContractError):
        parse(json.dumps(mutated).encode())
