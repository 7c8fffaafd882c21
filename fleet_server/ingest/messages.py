"""Validation of received MQTT messages into sales, events or rejections, without I/O."""

from dataclasses import dataclass, field
from datetime import datetime

from kiosk_agent.contract import (
    Channel,
    ContractError,
    KioskEvent,
    SaleRecord,
    parse_kiosk_topic,
    parse_payload,
)


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
    return parsed
