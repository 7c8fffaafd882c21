"""Command signatures: forged, expired, early, replayed and misaddressed commands are rejected."""

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kiosk_agent.contract import (
    PlanogramCommand,
    PlanogramProduct,
    PlanogramShelf,
    UnlockCommand,
    UnlockMode,
    encode_payload,
    parse_command,
)
from kiosk_agent.signing import (
    CLOCK_SKEW_ALLOWANCE_S,
    NONCE_RETENTION_S,
    CommandRejectedError,
    NonceStore,
    RejectReason,
    canonical_command_bytes,
    new_nonce,
    sign_command,
    verify_command,
)

KIOSK_ID = "hfut-dorm3-01"
KEY = bytes.fromhex("5f1c0e9a7b3d24c8a6e1f0b9d2c3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5")
NOW = datetime(2024, 5, 6, 8, 30, tzinfo=UTC)


@pytest.fixture
def nonce_store(tmp_path: Path) -> Iterator[NonceStore]:
    with NonceStore(tmp_path / "nonces.sqlite3") as store:
        yield store


def make_unlock(**changes: object) -> UnlockCommand:
    fields: dict[str, object] = {
        "command_id": uuid.uuid4(),
        "kiosk_id": KIOSK_ID,
        "issued_at": NOW,
        "expires_at": NOW + timedelta(seconds=10),
        "nonce": new_nonce(),
        "session_id": uuid.uuid4(),
        "door": 0,
        "mode": UnlockMode.PURCHASE,
    }
    fields.update(changes)
    return sign_command(UnlockCommand.model_validate(fields), KEY)


ONE_SECOND_LATER = NOW + timedelta(seconds=1)


def verify(
    command: UnlockCommand | PlanogramCommand,
    store: NonceStore,
    *,
    now: datetime = ONE_SECOND_LATER,
    kiosk_id: str = KIOSK_ID,
) -> None:
    verify_command(command, key=KEY, kiosk_id=kiosk_id, now=now, nonce_store=store)


def rejection(
    command: UnlockCommand | PlanogramCommand,
    store: NonceStore,
    *,
    now: datetime = ONE_SECOND_LATER,
    kiosk_id: str = KIOSK_ID,
) -> RejectReason:
    with pytest.raises(CommandRejectedError) as error:
        verify(command, store, now=now, kiosk_id=kiosk_id)
    return error.value.reason


def test_signed_unlock_accepted(nonce_store: NonceStore) -> None:
    command = make_unlock()

    verify(command, nonce_store)

    assert nonce_store.count() == 1


def test_signature_survives_json_round_trip(nonce_store: NonceStore) -> None:
    received = parse_command(encode_payload(make_unlock()))

    verify(received, nonce_store)


def test_signed_planogram_accepted(nonce_store: NonceStore) -> None:
    planogram = PlanogramCommand(
        command_id=uuid.uuid4(),
        kiosk_id=KIOSK_ID,
        issued_at=NOW,
        expires_at=NOW + timedelta(minutes=5),
        nonce=new_nonce(),
        version=3,
        shelves=[
            PlanogramShelf(
                shelf=0,
                capacity_items=10,
                products=[
                    PlanogramProduct(
                        product_id="tea",
                        name="黄山毛峰",
                        unit_weight_mg=250_000,
                        tolerance_mg=3_000,
                        price_fen=3500,
                    )
                ],
            )
        ],
    )

    verify(sign_command(planogram, KEY), nonce_store)


def test_canonical_encoding_is_sorted_compact_utf8() -> None:
    command = make_unlock()

    canonical = canonical_command_bytes(command)

    document = json.loads(canonical)
    assert "signature" not in document
    assert list(document) == sorted(document)
    assert b" " not in canonical
    assert document["issued_at"] == "2024-05-06T08:30:00.000000Z"
    expected = hmac.new(KEY, canonical, hashlib.sha256).hexdigest()
    assert command.signature == expected


def test_unsigned_command_rejected(nonce_store: NonceStore) -> None:
    command = make_unlock().model_copy(update={"signature": None})

    assert rejection(command, nonce_store) is RejectReason.BAD_SIGNATURE


@pytest.mark.parametrize("bit", [0, 1, 7, 128, 255])
def test_bit_flipped_signature_rejected(nonce_store: NonceStore, bit: int) -> None:
    command = make_unlock()
    assert command.signature is not None
    signature = bytearray(bytes.fromhex(command.signature))
    signature[bit // 8] ^= 1 << (bit % 8)
    forged = command.model_copy(update={"signature": signature.hex()})

    assert rejection(forged, nonce_store) is RejectReason.BAD_SIGNATURE
    assert nonce_store.count() == 0


def test_wrong_key_rejected(nonce_store: NonceStore) -> None:
    other_key = secrets.token_bytes(32)
    command = sign_command(make_unlock(), other_key)

    assert rejection(command, nonce_store) is RejectReason.BAD_SIGNATURE


def test_tampered_field_rejected(nonce_store: NonceStore) -> None:
    command = make_unlock()
    tampered = command.model_copy(update={"door": 1})

    assert rejection(tampered, nonce_store) is RejectReason.BAD_SIGNATURE


def test_wrong_kiosk_rejected(nonce_store: NonceStore) -> None:
    command = make_unlock(kiosk_id="hfut-dorm3-02")

    assert rejection(command, nonce_store) is RejectReason.WRONG_KIOSK


def test_expired_command_rejected(nonce_store: NonceStore) -> None:
    command = make_unlock()

    reason = rejection(command, nonce_store, now=NOW + timedelta(seconds=10, microseconds=1))

    assert reason is RejectReason.EXPIRED


def test_command_valid_until_expiry_instant(nonce_store: NonceStore) -> None:
    command = make_unlock()

    verify(command, nonce_store, now=NOW + timedelta(seconds=10))


def test_future_command_rejected(nonce_store: NonceStore) -> None:
    issued_at = NOW + timedelta(seconds=CLOCK_SKEW_ALLOWANCE_S + 1)
    command = make_unlock(issued_at=issued_at, expires_at=issued_at + timedelta(seconds=10))

    assert rejection(command, nonce_store, now=NOW) is RejectReason.NOT_YET_VALID


def test_small_clock_skew_accepted(nonce_store: NonceStore) -> None:
    issued_at = NOW + timedelta(seconds=CLOCK_SKEW_ALLOWANCE_S - 1)
    command = make_unlock(issued_at=issued_at, expires_at=issued_at + timedelta(seconds=10))

    verify(command, nonce_store, now=NOW)


def test_replayed_nonce_rejected(nonce_store: NonceStore) -> None:
    command = make_unlock()
    verify(command, nonce_store)

    assert rejection(command, nonce_store) is RejectReason.REPLAYED_NONCE


def test_new_command_with_used_nonce_rejected(nonce_store: NonceStore) -> None:
    first = make_unlock()
    verify(first, nonce_store)
    second = make_unlock(nonce=first.nonce)

    assert rejection(second, nonce_store) is RejectReason.REPLAYED_NONCE


def test_replay_rejected_after_reopening_store(tmp_path: Path) -> None:
    path = tmp_path / "nonces.sqlite3"
    command = make_unlock()
    with NonceStore(path) as store:
        verify(command, store)

    with NonceStore(path) as reopened:
        assert rejection(command, reopened) is RejectReason.REPLAYED_NONCE


def test_rejected_command_does_not_use_up_nonce(nonce_store: NonceStore) -> None:
    command = make_unlock()
    rejection(command, nonce_store, kiosk_id="hfut-dorm3-02")

    verify(command, nonce_store)


def test_nonce_pruned_only_after_retention(nonce_store: NonceStore) -> None:
    command = make_unlock()
    verify(command, nonce_store)
    kept_until = command.expires_at + timedelta(seconds=NONCE_RETENTION_S)

    assert nonce_store.prune(kept_until - timedelta(seconds=1)) == 0
    assert nonce_store.prune(kept_until + timedelta(seconds=1)) == 1
    assert nonce_store.count() == 0


def test_empty_key_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign_command(make_unlock(), b"")
