"""Validation of received MQTT messages into sales, events or rejections, without I/O."""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kiosk_agent.contract import (
    Channel,
    ContractError,
    KioskEvent,
    SaleRecord,
    parse_kiosk_topic,
    parse_payload,
)

# A JSON escape of the NUL character: a backslash that no other backslash escapes, then
# u0000. PostgreSQL stores no NUL in text or jsonb, so such a message would fail its batch.
NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# Posting to the reports converts times to Asia/Shanghai, which overflows Python's datetime
# after 9999-12-31T16:00Z. The limit leaves a wide margin, and no cabinet sells that late.
LATEST_TIME = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ReceivedMessage:
    topic: str
    payload: bytes
    # Server time of arrival (UTC), stored with the sale or event.
    received_at: datetime


@dataclass(frozen=True)
class ValidSale:
    message: ReceivedMessage
    record: SaleRecord
    # (kiosk_id, sale_id as text), the de-duplication key; ingest sorts and looks up by it.
    key: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.record.kiosk_id, str(self.record.sale_id)))

    @property
    def kiosk_id(self) -> str:
        return self.record.kiosk_id


@dataclass(frozen=True)
class ValidEvent:
    message: ReceivedMessage
    event: KioskEvent
    # (kiosk_id, event_id as text), the de-duplication key.
    key: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.event.kiosk_id, str(self.event.event_id)))

    @property
    def kiosk_id(self) -> str:
        return self.event.kiosk_id


@dataclass(frozen=True)
class Rejection:
    message: ReceivedMessage
    # The kiosk id from the topic, or None when the topic is not a cabinet topic.
    kiosk_id: str | None
    reason: str


def classify(message: ReceivedMessage) -> ValidSale | ValidEvent | Rejection:
    """Validate the topic and the payload, and check that both name the same cabinet."""
    try:
        kiosk_id, channel = parse_kiosk_topic(message.topic)
    except ContractError as error:
        return Rejection(message, None, error.reason)

    parsed: ValidSale | ValidEvent
    try:
        if channel is Channel.SALES:
            parsed = ValidSale(message, parse_payload(SaleRecord, message.payload))
        elif channel is Channel.EVENTS:
            parsed = ValidEvent(message, parse_payload(KioskEvent, message.payload))
        else:
            return Rejection(message, kiosk_id, f"channel {channel.value} is not ingested here")
    except ContractError as error:
        return Rejection(message, kiosk_id, error.reason)

    if parsed.kiosk_id != kiosk_id:
        return Rejection(
            message,
            kiosk_id,
            f"payload kiosk_id {parsed.kiosk_id!r} differs from the topic's {kiosk_id!r}",
        )
    if b"\\u0000" in message.payload and NUL_ESCAPE.search(message.payload):
        return Rejection(
            message,
            kiosk_id,
            "payload contains a NUL character (\\u0000), which PostgreSQL cannot store",
        )
    late = _late_time(parsed)
    if late is not None:
        name, value = late
        return Rejection(
            message,
            kiosk_id,
            f"{name} {value.isoformat()} is out of range: it must be before the year "
            f"{LATEST_TIME.year}",
        )
    return parsed


def _late_time(parsed: ValidSale | ValidEvent) -> tuple[str, datetime] | None:
    """Return the name and value of a timestamp at or after LATEST_TIME, if there is one."""
    times: dict[str, datetime | None]
    if isinstance(parsed, ValidEvent):
        times = {"at": parsed.event.at}
    else:
        record = parsed.record
        times = {
            "opened_at": record.opened_at,
            "closed_at": record.closed_at,
            "recorded_at": record.recorded_at,
        }
    for name, value in times.items():
        if value is not None and value >= LATEST_TIME:
            return name, value
    return None
