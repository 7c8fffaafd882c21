"""MQTT contract between the kiosk agent and the fleet server: topics, QoS and payloads.

Both ends import this module, so a payload that one end writes is exactly what the other
end validates. Every cabinet owns one topic subtree::

    zhigui/v1/kiosks/{kiosk_id}/sales      agent -> server   QoS 1            SaleRecord
                               /events     agent -> server   QoS 1            KioskEvent
                               /telemetry  agent -> server   QoS 0            Telemetry
                               /status     agent -> server   QoS 1, retained  KioskStatus
                               /commands   server -> agent   QoS 1            Command
                               /acks       server -> agent   QoS 1            Ack

The agent's last will is a retained ``KioskStatus`` with state ``offline`` on ``status``.

Delivery of sales and events is end to end. The agent keeps each one in its outbox and
publishes it again on a backoff schedule until an ``Ack`` that names its id arrives. The
server therefore receives duplicates: it de-duplicates on (kiosk id, sale id) or (kiosk id,
event id), and it acknowledges a duplicate again, because the first ``Ack`` may have been
lost. Commands are signed with the cabinet's key (see ``kiosk_agent.signing``). Acks are
not signed: the broker's ACL lets only the server publish under a cabinet's ``acks`` topic.

Payloads are JSON objects with a version field ``v`` (1 for every model here). Money is an
integer number of fen and weight an integer number of milligrams, never a float.
Timestamps are timezone-aware and serialized in UTC as ISO 8601 with microseconds and a
``Z`` suffix, for example ``2024-05-01T08:30:00.000000Z``. Models are strict: a JSON
payload must carry each field in its own JSON type, with no extra fields.
"""

import enum
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, Literal, Self, TypeVar
from uuid import UUID

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from typing_extensions import TypeAliasType

PAYLOAD_VERSION: Final = 1
TOPIC_ROOT: Final = "zhigui/v1/kiosks"
# Any kiosk id that is safe in a topic level: payloads and topics are checked against it.
KIOSK_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# The id a cabinet is registered and configured with: AH, the five-digit institution code
# of its school (安徽大学 is 10357) and a four-digit number. The server's registry and the
# agent's config both use it; only the format is checked, not the school code.
# [0-9], not \d: \d also matches full-width and other Unicode digits.
REGISTERED_KIOSK_ID_PATTERN: Final = r"^AH-[0-9]{5}-[0-9]{4}$"
# Shared-subscription group names share the kiosk id alphabet, so they contain no "/", "+"
# or "#".
SUBSCRIPTION_GROUP_PATTERN: Final = KIOSK_ID_PATTERN

# Larger payloads are rejected before JSON parsing. A planogram of 32 shelves with 16
# products each is about 60 KiB.
MAX_PAYLOAD_BYTES: Final = 256 * 1024
# Characters of a rejected payload that a ContractError quotes.
ERROR_EXCERPT_CHARS: Final = 120

# Integers are bounded to a signed 32-bit range so that both ends can store them in a plain
# INTEGER column. The serial protocol reports shelf weights as i32 as well.
INT32_MAX: Final = 2**31 - 1
INT32_MIN: Final = -(2**31)
# Shelves and doors are u8 indexes on the serial bus, where the door index 0xFF means
# "all doors".
MAX_SHELF_INDEX: Final = 0xFF
MAX_DOOR_INDEX: Final = 0xFE
MAX_LIST_ITEMS: Final = 1000


class ContractError(ValueError):
    """A payload, topic or kiosk id that violates the MQTT contract.

    ``reason`` is short and safe to log: it quotes at most ``ERROR_EXCERPT_CHARS``
    characters of the offending input and never the whole payload.
    """

    def __init__(self, reason: str, *, excerpt: str = "") -> None:
        message = f"{reason}; payload starts with {excerpt!r}" if excerpt else reason
        super().__init__(message)
        self.reason = reason
        self.excerpt = excerpt


# --- Field types ----------------------------------------------------------------------------


def utc_now() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        # For example 0001-01-01T00:00:00+01:00, which has no UTC equivalent.
        raise ValueError("timestamp is out of range in UTC") from exc


def format_utc(value: datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC with microseconds and a ``Z`` suffix."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]
KioskId = Annotated[str, Field(pattern=KIOSK_ID_PATTERN)]
RegisteredKioskId = Annotated[
    str, Field(pattern=REGISTERED_KIOSK_ID_PATTERN, examples=["AH-10357-0001"])
]
ProductId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
# Lower-case snake_case code, such as a review reason or a session state name.
Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
ShelfIndex = Annotated[int, Field(ge=0, le=MAX_SHELF_INDEX)]
DoorIndex = Annotated[int, Field(ge=0, le=MAX_DOOR_INDEX)]
Fen = Annotated[int, Field(ge=0, le=INT32_MAX)]
Milligrams = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
Version = Annotated[int, Field(ge=1, le=INT32_MAX)]
# 128-bit random nonce and HMAC-SHA256 signature, both as lower-case hex.
Nonce = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Signature = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
ShortText = Annotated[str, Field(min_length=1, max_length=100)]

# A JSON value without floats, for free-form event details.
DetailValue = TypeAliasType(
    "DetailValue",
    "str | int | bool | list[DetailValue] | dict[str, DetailValue] | None",
)


class ContractModel(BaseModel):
    """Base of payloads and their nested objects: strict, immutable, no extra fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Payload(ContractModel):
    """Base of every top-level MQTT payload, which carries the payload version ``v``."""

    v: Literal[1] = PAYLOAD_VERSION


def _require_unique(values: Sequence[object], description: str) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {description} {value!r}")
        seen.add(value)


# --- Sales ----------------------------------------------------------------------------------


class SaleOutcome(enum.StrEnum):
    """Outcome of an authorized purchase session."""

    COMPLETED = "completed"
    NOTHING_TAKEN = "nothing_taken"
    DOOR_NOT_OPENED = "door_not_opened"
    FORCED_OPEN = "forced_open"
    LOCK_FAULT = "lock_fault"
    CANCELLED = "cancelled"


class ReviewReason(enum.StrEnum):
    """Known codes of ``Review.reasons``.

    The field accepts any lower-case code, so that an agent can report a new reason
    without a contract version change. A server shows an unknown code as it is.
    """

    AMBIGUOUS_WEIGHT = "ambiguous_weight"
    UNEXPLAINED_WEIGHT = "unexplained_weight"
    WRONG_SHELF_RETURN = "wrong_shelf_return"
    SCALE_FAULT = "scale_fault"


class SaleLine(ContractModel):
    """Items of one product taken from one shelf, priced by the planogram in force."""

    product_id: ProductId
    quantity: Annotated[int, Field(gt=0, le=INT32_MAX)]
    unit_price_fen: Fen
    shelf: ShelfIndex

    @property
    def amount_fen(self) -> int:
        return self.quantity * self.unit_price_fen


class Review(ContractModel):
    """Whether an operator must review the sale, and the reason codes."""

    needed: bool = False
    reasons: Annotated[list[Code], Field(max_length=32)] = []

    @model_validator(mode="after")
    def _check_reasons_match_flag(self) -> Self:
        if self.needed and not self.reasons:
            raise ValueError("a review that is needed must name at least one reason")
        if not self.needed and self.reasons:
            raise ValueError("reasons are given but the review is not needed")
        return self


class ShelfDelta(ContractModel):
    """Stable weights of one shelf before the door opened and after it closed: the evidence."""

    shelf: ShelfIndex
    before_mg: Milligrams
    after_mg: Milligrams


class SaleRecord(Payload):
    """Durable result of one authorized purchase session, including sessions that charged nothing.

    The agent creates ``sale_id``, and ``session_id`` comes from the unlock command. The
    server charges the sum of ``lines`` and nothing else.
    """

    sale_id: UUID
    kiosk_id: KioskId
    session_id: UUID
    outcome: SaleOutcome
    opened_at: UtcDatetime | None = None
    closed_at: UtcDatetime | None = None
    recorded_at: UtcDatetime
    lines: Annotated[list[SaleLine], Field(max_length=MAX_LIST_ITEMS)] = []
    review: Review = Review()
    shelf_deltas: Annotated[list[ShelfDelta], Field(max_length=MAX_SHELF_INDEX + 1)] = []
    planogram_version: Version

    @property
    def total_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines)

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.opened_at and self.closed_at and self.closed_at < self.opened_at:
            raise ValueError("closed_at is earlier than opened_at")
        if self.outcome in (SaleOutcome.NOTHING_TAKEN, SaleOutcome.DOOR_NOT_OPENED) and self.lines:
            raise ValueError(f"a sale with outcome {self.outcome.value} must have no lines")
        if self.outcome is SaleOutcome.DOOR_NOT_OPENED and self.opened_at is not None:
            raise ValueError("a sale with outcome door_not_opened must have no opened_at")
        _require_unique([(line.shelf, line.product_id) for line in self.lines], "(shelf, product)")
        _require_unique([delta.shelf for delta in self.shelf_deltas], "shelf in shelf_deltas")
        return self


# --- Events ---------------------------------------------------------------------------------


class EventType(enum.StrEnum):
    DOOR_FORCED = "door_forced"
    DOOR_LEFT_OPEN = "door_left_open"
    LOCK_FAULT = "lock_fault"
    SCALE_FAULT = "scale_fault"
    SCALE_RECOVERED = "scale_recovered"
    RESTOCK = "restock"
    COMMAND_REJECTED = "command_rejected"
    SESSION_STATE = "session_state"
    SERIAL_LINK_DOWN = "serial_link_down"
    SERIAL_LINK_UP = "serial_link_up"
    DISK_FULL = "disk_full"
    BOARD_RESTARTED = "board_restarted"
    # A pack was put back on a shelf other than its own; restock staff should move it.
    ITEM_MISPLACED = "item_misplaced"


class StockLine(ContractModel):
    """Number of items of one product on one shelf after a restock."""

    shelf: ShelfIndex
    product_id: ProductId
    quantity: Count


class KioskEvent(Payload):
    """Something that happened on a cabinet and that the server records or alerts on.

    ``detail`` carries type-specific JSON values without floats. A restock event also
    carries the typed ``stock`` list, and no other event type may.
    """

    event_id: UUID
    kiosk_id: KioskId
    type: EventType
    at: UtcDatetime
    session_id: UUID | None = None
    detail: Annotated[dict[str, DetailValue], Field(max_length=64)] = {}
    stock: Annotated[list[StockLine], Field(max_length=MAX_LIST_ITEMS)] | None = None

    @model_validator(mode="after")
    def _check_stock_only_on_restock(self) -> Self:
        if self.stock is not None and self.type is not EventType.RESTOCK:
            raise ValueError(f"stock is only allowed on restock events, not on {self.type.value}")
        if self.stock is not None:
            _require_unique([(line.shelf, line.product_id) for line in self.stock], "stock line")
        return self


# --- Telemetry and status -------------------------------------------------------------------


class LockState(enum.StrEnum):
    """JSON form of ``firmware_protocol.LockState``, with the same member names."""

    LOCKED = "locked"
    RELEASED = "released"
    FAULT = "fault"


class DoorPosition(enum.StrEnum):
    """JSON form of ``firmware_protocol.DoorPosition``, with the same member names."""

    CLOSED = "closed"
    OPEN = "open"


class SerialLinkState(enum.StrEnum):
    UP = "up"
    DOWN = "down"


class DoorTelemetry(ContractModel):
    door: DoorIndex
    lock: LockState
    position: DoorPosition


class ShelfTelemetry(ContractModel):
    shelf: ShelfIndex
    weight_mg: Milligrams
    stable: bool
    fault: bool


class OutboxBacklog(ContractModel):
    """Sales and events that wait in the outbox for the server's acknowledgement."""

    sales: Count
    events: Count
    oldest_created_at: UtcDatetime | None = None


class Telemetry(Payload):
    """Heartbeat that the agent publishes every few seconds at QoS 0."""

    kiosk_id: KioskId
    sent_at: UtcDatetime
    doors: Annotated[list[DoorTelemetry], Field(max_length=MAX_DOOR_INDEX + 1)]
    shelves: Annotated[list[ShelfTelemetry], Field(max_length=MAX_SHELF_INDEX + 1)]
    backlog: OutboxBacklog
    # None until the board has replied to the serial handshake.
    firmware_version: ShortText | None
    agent_version: ShortText
    serial_link: SerialLinkState
    session_state: Code
    planogram_version: Version | None
    disk_free_bytes: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _check_unique_indexes(self) -> Self:
        _require_unique([door.door for door in self.doors], "door")
        _require_unique([shelf.shelf for shelf in self.shelves], "shelf")
        return self


class KioskState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class KioskStatus(Payload):
    """Retained connection state of a cabinet.

    ``since`` is None in the last will, because the agent cannot know when the broker
    will publish it. The server then uses the time it received the message.
    """

    kiosk_id: KioskId
    state: KioskState
    since: UtcDatetime | None
    agent_version: ShortText


# --- Commands (server -> agent) -------------------------------------------------------------


class SignedCommand(Payload):
    """Fields that every command carries for its signature, expiry and replay protection.

    ``signature`` is the HMAC-SHA256 over the command's canonical encoding without the
    signature (``kiosk_agent.signing``). It is None only while the server builds the
    command, and the agent rejects an unsigned command as a bad signature.
    """

    # Longest allowed time between issued_at and expires_at.
    MAX_LIFETIME_S: ClassVar[float] = 60.0

    command_id: UUID
    kiosk_id: KioskId
    issued_at: UtcDatetime
    expires_at: UtcDatetime
    nonce: Nonce
    signature: Signature | None = None

    @model_validator(mode="after")
    def _check_lifetime(self) -> Self:
        lifetime_s = (self.expires_at - self.issued_at).total_seconds()
        if lifetime_s <= 0:
            raise ValueError("expires_at must be later than issued_at")
        if lifetime_s > self.MAX_LIFETIME_S:
            raise ValueError(
                f"command lifetime {lifetime_s:.0f} s exceeds the maximum "
                f"{self.MAX_LIFETIME_S:.0f} s"
            )
        return self


class UnlockMode(enum.StrEnum):
    PURCHASE = "purchase"
    RESTOCK = "restock"


class UnlockCommand(SignedCommand):
    """Open one door for a purchase session, or for an operator's restock."""

    type: Literal["unlock"] = "unlock"
    session_id: UUID
    door: DoorIndex
    mode: UnlockMode


class PlanogramProduct(ContractModel):
    product_id: ProductId
    name: ShortText
    unit_weight_mg: Annotated[int, Field(gt=0, le=INT32_MAX)]
    tolerance_mg: Annotated[int, Field(ge=0, le=INT32_MAX)]
    price_fen: Fen


class PlanogramShelf(ContractModel):
    shelf: ShelfIndex
    # The door the shelf is behind; None where the operator did not give it.
    door: DoorIndex | None = None
    # Number of items that fit on the shelf, for restock planning.
    capacity_items: Count
    products: Annotated[list[PlanogramProduct], Field(max_length=64)]

    @model_validator(mode="after")
    def _check_unique_products(self) -> Self:
        _require_unique([product.product_id for product in self.products], "product_id")
        return self


class PlanogramCommand(SignedCommand):
    """Replace the cabinet's planogram: which products sit on which shelf, and their prices.

    The agent applies only a version higher than the one in force, so a replayed older
    planogram cannot roll prices back.
    """

    # A planogram is not time-critical, so it may wait longer for a cabinet than an unlock.
    MAX_LIFETIME_S: ClassVar[float] = 3600.0

    type: Literal["planogram"] = "planogram"
    version: Version
    shelves: Annotated[list[PlanogramShelf], Field(max_length=MAX_SHELF_INDEX + 1)]

    @model_validator(mode="after")
    def _check_unique_shelves(self) -> Self:
        _require_unique([shelf.shelf for shelf in self.shelves], "shelf")
        return self


# New command types join this union with their own ``type`` literal.
Command = Annotated[UnlockCommand | PlanogramCommand, Field(discriminator="type")]
COMMAND_ADAPTER: Final[TypeAdapter[Command]] = TypeAdapter(Command)


class Ack(Payload):
    """Server's acknowledgement of sales and events that it has committed."""

    sale_ids: Annotated[list[UUID], Field(max_length=MAX_LIST_ITEMS)] = []
    event_ids: Annotated[list[UUID], Field(max_length=MAX_LIST_ITEMS)] = []


# --- Topics ---------------------------------------------------------------------------------


class Channel(enum.StrEnum):
    """Last level of a cabinet's topic."""

    SALES = "sales"
    EVENTS = "events"
    TELEMETRY = "telemetry"
    STATUS = "status"
    COMMANDS = "commands"
    ACKS = "acks"


CHANNEL_QOS: Final[dict[Channel, int]] = {
    Channel.SALES: 1,
    Channel.EVENTS: 1,
    Channel.TELEMETRY: 0,
    Channel.STATUS: 1,
    Channel.COMMANDS: 1,
    Channel.ACKS: 1,
}
RETAINED_CHANNELS: Final = frozenset({Channel.STATUS})
# Payload model of each channel, except commands, which use COMMAND_ADAPTER.
CHANNEL_MODELS: Final[dict[Channel, type[Payload]]] = {
    Channel.SALES: SaleRecord,
    Channel.EVENTS: KioskEvent,
    Channel.TELEMETRY: Telemetry,
    Channel.STATUS: KioskStatus,
    Channel.ACKS: Ack,
}

_KIOSK_ID_ADAPTER: Final = TypeAdapter(KioskId)
_GROUP_ADAPTER: Final = TypeAdapter(Annotated[str, Field(pattern=SUBSCRIPTION_GROUP_PATTERN)])


def validate_kiosk_id(kiosk_id: str) -> str:
    """Return ``kiosk_id`` unchanged, or raise ContractError if it is not a valid kiosk id.

    A kiosk id is 1 to 64 ASCII letters, digits, ``_`` or ``-``, starting with a letter or
    digit, so it never contains the MQTT separators and wildcards ``/``, ``+`` and ``#``.
    """
    try:
        return _KIOSK_ID_ADAPTER.validate_python(kiosk_id)
    except ValidationError as exc:
        raise ContractError(
            f"invalid kiosk id {kiosk_id[:ERROR_EXCERPT_CHARS]!r}: expected 1 to 64 letters, "
            "digits, '_' or '-', starting with a letter or digit"
        ) from exc


def kiosk_topic(kiosk_id: str, channel: Channel) -> str:
    """Return the topic of one cabinet's channel, such as ``zhigui/v1/kiosks/K1/sales``."""
    return f"{TOPIC_ROOT}/{validate_kiosk_id(kiosk_id)}/{channel.value}"


def fleet_topic_filter(channel: Channel) -> str:
    """Return the filter that matches one channel of every cabinet (``.../kiosks/+/sales``)."""
    return f"{TOPIC_ROOT}/+/{channel.value}"


def shared_subscription(group: str, channel: Channel = Channel.SALES) -> str:
    """Return a shared-subscription filter for server ingest workers.

    Workers that subscribe to ``$share/{group}/zhigui/v1/kiosks/+/sales`` with the same
    group split the messages between them: the broker delivers each message to one worker.
    Mosquitto 2.0 and EMQX accept shared subscriptions from MQTT 3.1.1 clients too.
    """
    try:
        _GROUP_ADAPTER.validate_python(group)
    except ValidationError as exc:
        raise ContractError(
            f"invalid shared-subscription group {group[:ERROR_EXCERPT_CHARS]!r}: expected 1 to "
            "64 letters, digits, '_' or '-'"
        ) from exc
    return f"$share/{group}/{fleet_topic_filter(channel)}"


def parse_kiosk_topic(topic: str) -> tuple[str, Channel]:
    """Split a cabinet topic into its kiosk id and channel, or raise ContractError."""
    prefix = TOPIC_ROOT + "/"
    parts = topic.removeprefix(prefix).split("/") if topic.startswith(prefix) else []
    if len(parts) != 2:
        raise ContractError(
            f"topic {topic[:ERROR_EXCERPT_CHARS]!r} is not of the form {TOPIC_ROOT}/KIOSK/CHANNEL"
        )
    kiosk_id, channel_name = parts
    try:
        channel = Channel(channel_name)
    except ValueError:
        raise ContractError(
            f"topic {topic[:ERROR_EXCERPT_CHARS]!r} names an unknown channel "
            f"{channel_name[:ERROR_EXCERPT_CHARS]!r}"
        ) from None
    return validate_kiosk_id(kiosk_id), channel


# --- Encoding and parsing -------------------------------------------------------------------

PayloadT = TypeVar("PayloadT", bound=Payload)


def encode_payload(payload: Payload) -> bytes:
    """Serialize a payload as compact UTF-8 JSON."""
    return payload.model_dump_json().encode()


def _excerpt(raw: bytes) -> str:
    return raw[: ERROR_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:ERROR_EXCERPT_CHARS]


def _reject_json_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")


def _json_error(raw: bytes, error: ValueError) -> str:
    """Describe why ``raw`` is not JSON, in the json module's words where it has some."""
    reason: Exception = error
    try:
        # Payloads are UTF-8. Given bytes, the json module would guess UTF-16 or UTF-32
        # from NUL bytes, and name that codec in its error.
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    try:
        json.loads(decoded, parse_constant=_reject_json_constant)
    except (ValueError, RecursionError) as exc:
        reason = exc if str(exc) else error
    text = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
    return text[:ERROR_EXCERPT_CHARS]


def _check_envelope(raw: bytes, payload_name: str) -> None:
    """Raise ContractError unless ``raw`` is a JSON object of a supported payload version."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ContractError(
            f"invalid {payload_name}: payload of {len(raw)} bytes exceeds the limit of "
            f"{MAX_PAYLOAD_BYTES} bytes",
            excerpt=_excerpt(raw),
        )
    try:
        # orjson is several times faster than the json module, and rejects NaN, Infinity,
        # invalid UTF-8 and integers beyond 64 bits.
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ContractError(
            f"invalid {payload_name}: not valid JSON ({_json_error(raw, exc)})",
            excerpt=_excerpt(raw),
        ) from exc
    if not isinstance(document, dict):
        raise ContractError(
            f"invalid {payload_name}: expected a JSON object", excerpt=_excerpt(raw)
        )
    version = document.get("v")
    if "v" not in document:
        raise ContractError(
            f"invalid {payload_name}: missing version field 'v'", excerpt=_excerpt(raw)
        )
    # bool is a subclass of int, and true must not pass as version 1.
    if type(version) is not int or version != PAYLOAD_VERSION:
        version_text = repr(version)[:ERROR_EXCERPT_CHARS]
        raise ContractError(
            f"invalid {payload_name}: unsupported payload version {version_text}, "
            f"expected {PAYLOAD_VERSION}",
            excerpt=_excerpt(raw),
        )


def _summarize(error: ValidationError, payload_name: str) -> str:
    """Describe the first validation error by field path and message, without input values."""
    details = error.errors(include_url=False, include_input=False, include_context=False)
    if not details:
        return f"invalid {payload_name}"
    first = details[0]
    location = ".".join(str(part) for part in first["loc"])[:ERROR_EXCERPT_CHARS] or "payload"
    more = f" (and {len(details) - 1} more errors)" if len(details) > 1 else ""
    return f"invalid {payload_name}: {location}: {first['msg'][:ERROR_EXCERPT_CHARS]}{more}"


def parse_payload(model: type[PayloadT], raw: bytes) -> PayloadT:
    """Validate a JSON payload as ``model``, or raise ContractError with a short reason.

    Bad JSON, a missing or unsupported version, extra fields, wrong JSON types (a float
    amount, a string count) and oversized payloads all raise ContractError. No pydantic or
    json exception escapes.
    """
    _check_envelope(raw, model.__name__)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ContractError(_summarize(exc, model.__name__), excerpt=_excerpt(raw)) from exc


def parse_command(raw: bytes) -> UnlockCommand | PlanogramCommand:
    """Validate a JSON command of any type, chosen by its ``type`` field, or raise ContractError."""
    _check_envelope(raw, "command")
    try:
        return COMMAND_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise ContractError(_summarize(exc, "command"), excerpt=_excerpt(raw)) from exc
