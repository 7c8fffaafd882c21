"""The campus card wallet: holds, captures, releases, refunds, top-ups and concurrency."""

import threading

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.db import session_scope
from fleet_server.models import (
    HoldStatus,
    PaymentHold,
    TransactionKind,
    Wallet,
    WalletTransaction,
)
from fleet_server.services.audit import list_audit_entries
from fleet_server.services.campus_wallet import CampusWalletProvider, account_for_user
from fleet_server.services.payments import (
    AccountNotFoundError,
    AmountError,
    HoldStateError,
    InsufficientFundsError,
    ReferenceConflictError,
)
from purchase_helpers import INITIAL_BALANCE_FEN, Shop, wallet_of

pytest_plugins = ["server_fixtures", "purchase_fixtures"]


def kinds(session: Session, user_id: int) -> list[tuple[TransactionKind, int]]:
    wallet = wallet_of(session, user_id)
    rows = session.scalars(
        sa.select(WalletTransaction)
        .where(WalletTransaction.wallet_id == wallet.id)
        .order_by(WalletTransaction.id)
    )
    return [(row.kind, row.amount_fen) for row in rows]


# --- Provider --------------------------------------------------------------------------------


def test_hold_capture_releases_rest(shop: Shop, seeded: sessionmaker[Session]) -> None:
    account = account_for_user(shop.student_id)

    with session_scope(seeded) as session:
        provider = CampusWalletProvider(session)
        hold_id = provider.hold(account, 3_000, "purchase:one")
        held = wallet_of(session, shop.student_id)
        assert held.held_fen == 3_000
        assert provider.available_fen(account) == INITIAL_BALANCE_FEN - 3_000
        result = provider.capture(hold_id, 1_250)

    assert result.captured_fen == 1_250
    assert result.released_fen == 1_750
    with seeded() as session:
        wallet = wallet_of(session, shop.student_id)
        assert wallet.balance_fen == INITIAL_BALANCE_FEN - 1_250
        assert wallet.held_fen == 0
        hold = session.get(PaymentHold, hold_id)
        assert hold is not None
        assert hold.status is HoldStatus.CAPTURED
        assert hold.captured_fen == 1_250
        assert kinds(session, shop.student_id) == [
            (TransactionKind.TOP_UP, INITIAL_BALANCE_FEN),
            (TransactionKind.HOLD, 3_000),
            (TransactionKind.CAPTURE, 1_250),
            (TransactionKind.RELEASE, 1_750),
        ]


def test_hold_same_reference_once(shop: Shop, seeded: sessionmaker[Session]) -> None:
    account = account_for_user(shop.student_id)

    with session_scope(seeded) as session:
        provider = CampusWalletProvider(session)
        first = provider.hold(account, 2_000, "purchase:repeat")
        second = provider.hold(account, 2_000, "purchase:repeat")
        with pytest.raises(ReferenceConflictError):
            provider.hold(account, 2_500, "purchase:repeat")

    assert first == second
    with seeded() as session:
        assert wallet_of(session, shop.student_id).held_fen == 2_000


def test_capture_and_release_idempotent(shop: Shop, seeded: sessionmaker[Session]) -> None:
    account = account_for_user(shop.student_id)

    with session_scope(seeded) as session:
        provider = CampusWalletProvider(session)
        captured_hold = provider.hold(account, 1_000, "purchase:a")
        released_hold = provider.hold(account, 1_000, "purchase:b")
        first = provider.capture(captured_hold, 600)
        again = provider.capture(captured_hold, 600)
        provider.release(released_hold)
        provider.release(released_hold)
        with pytest.raises(HoldStateError):
            provider.capture(captured_hold, 700)
        with pytest.raises(HoldStateError):
            provider.release(captured_hold)
        with pytest.raises(HoldStateError):
            provider.capture(released_hold, 100)

    assert first == again
    with seeded() as session:
        wallet = wallet_of(session, shop.student_id)
        assert wallet.balance_fen == INITIAL_BALANCE_FEN - 600
        assert wallet.held_fen == 0
        assert kinds(session, shop.student_id)[1:] == [
            (TransactionKind.HOLD, 1_000),
            (TransactionKind.HOLD, 1_000),
            (TransactionKind.CAPTURE, 600),
            (TransactionKind.RELEASE, 400),
            (TransactionKind.RELEASE, 1_000),
        ]


def test_refund_never_exceeds_capture(shop: Shop, seeded: sessionmaker[Session]) -> None:
    with session_scope(seeded) as session:
        provider = CampusWalletProvider(session)
        hold_id = provider.hold(account_for_user(shop.student_id), 2_000, "purchase:d")
        provider.capture(hold_id, 1_500)
        first = provider.refund(hold_id, 1_000, "broken package", "refund:1")
        repeated = provider.refund(hold_id, 1_000, "broken package", "refund:1")
        with pytest.raises(AmountError):
            provider.refund(hold_id, 501, "too much", "refund:2")
        last = provider.refund(hold_id, 500, "rest", "refund:3")
        with pytest.raises(ReferenceConflictError):
            provider.refund(hold_id, 400, "reused reference", "refund:3")

    assert first.total_refunded_fen == 1_000
    assert repeated.refunded_fen == 1_000
    assert last.total_refunded_fen == 1_500
    with seeded() as session:
        assert wallet_of(session, shop.student_id).balance_fen == INITIAL_BALANCE_FEN
        refunds = [amount for kind, amount in kinds(session, shop.student_id) if kind == "refund"]
        assert refunds == [1_000, 500]


def test_invalid_operations_rejected(shop: Shop, seeded: sessionmaker[Session]) -> None:
    account = account_for_user(shop.student_id)
    with session_scope(seeded) as session:
        provider = CampusWalletProvider(session)
        open_hold = provider.hold(account, 1_000, "purchase:c")
        released_hold = provider.hold(account, 800, "purchase:e")
        provider.release(released_hold)

        with pytest.raises(AmountError):
            provider.capture(open_hold, 1_001)
        with pytest.raises(AmountError):
            provider.capture(open_hold, -1)
        with pytest.raises(AmountError):
            provider.hold(account, 0, "purchase:zero")
        with pytest.raises(HoldStateError):
            provider.refund(released_hold, 100, "nothing captured", "refund:e")
        with pytest.raises(InsufficientFundsError) as error:
            provider.hold(account, 4_001, "purchase:g")
        assert error.value.available_fen == 4_000
        with pytest.raises(AccountNotFoundError):
            provider.available_fen(account_for_user(shop.world.province_admin_id))
        with pytest.raises(AccountNotFoundError):
            provider.hold("not-a-number", 100, "purchase:h")


def test_balance_check_constraint(shop: Shop, seeded: sessionmaker[Session]) -> None:
    with seeded() as session:
        wallet = wallet_of(session, shop.student_id)
        wallet.balance_fen = -1

        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
        wallet = wallet_of(session, shop.student_id)
        wallet.held_fen = wallet.balance_fen + 1
        with pytest.raises(IntegrityError):
            session.commit()


def test_concurrent_holds_cannot_overdraw(shop: Shop, seeded: sessionmaker[Session]) -> None:
    """Eight transactions hold 2000 fen each on 5000 fen at once: exactly two succeed."""
    account = account_for_user(shop.student_id)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def try_hold(index: int) -> None:
        barrier.wait(timeout=10)
        try:
            with session_scope(seeded) as session:
                CampusWalletProvider(session).hold(account, 2_000, f"purchase:race-{index}")
            outcome = "held"
        except InsufficientFundsError:
            outcome = "insufficient"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=try_hold, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["held"] * 2 + ["insufficient"] * 6
    with seeded() as session:
        wallet = wallet_of(session, shop.student_id)
        assert wallet.balance_fen == INITIAL_BALANCE_FEN
        assert wallet.held_fen == 4_000
        holds = session.scalar(sa.select(sa.func.count()).select_from(PaymentHold))
        assert holds == 2


# --- Top-ups and the wallet API -----------------------------------------------------------


def test_school_admin_tops_up_student(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    path = f"/api/v1/wallets/{shop.student_id}/top-ups"
    body = {"amount_fen": 2_000, "reference": "ahu-2024-0001", "note": "开学充值"}

    first = shop_client.post(path, json=body, headers=shop.headers["school_admin_a"])
    repeated = shop_client.post(path, json=body, headers=shop.headers["school_admin_a"])

    assert first.status_code == 201, first.json()
    assert first.json()["balance_fen"] == INITIAL_BALANCE_FEN + 2_000
    assert first.json()["available_fen"] == INITIAL_BALANCE_FEN + 2_000
    assert first.json()["transactions"][0]["kind"] == "top_up"
    assert first.json()["transactions"][0]["note"] == "开学充值"
    assert repeated.status_code == 200
    assert repeated.json()["balance_fen"] == INITIAL_BALANCE_FEN + 2_000
    with seeded() as session:
        audit = list_audit_entries(session, object_type="wallet", object_id=shop.student_id)
        assert [entry.action for entry in audit] == ["wallet.top_up"]
        assert audit[0].actor_user_id == shop.world.a.admin_id
        assert audit[0].before == {"balance_fen": INITIAL_BALANCE_FEN}
        assert audit[0].after is not None
        assert audit[0].after["amount_fen"] == 2_000


def test_top_up_scope_and_roles(shop_client: TestClient, shop: Shop) -> None:
    path = f"/api/v1/wallets/{shop.student_id}/top-ups"
    body = {"amount_fen": 100}
    shop_client.post(
        path, json={"amount_fen": 100, "reference": "r-1"}, headers=shop.headers["province_admin"]
    )

    other_school = shop_client.post(path, json=body, headers=shop.headers["school_admin_b"])
    operator = shop_client.post(path, json=body, headers=shop.headers["operator_a"])
    student = shop_client.post(path, json=body, headers=shop.headers["student"])
    not_student = shop_client.post(
        f"/api/v1/wallets/{shop.world.a.admin_id}/top-ups",
        json=body,
        headers=shop.headers["province_admin"],
    )

    reused = shop_client.post(
        path, json={"amount_fen": 200, "reference": "r-1"}, headers=shop.headers["province_admin"]
    )

    assert other_school.status_code == 404
    assert other_school.json()["code"] == "user_not_found"
    assert operator.status_code == 403
    assert student.status_code == 403
    assert not_student.status_code == 404
    assert reused.status_code == 422
    assert reused.json()["code"] == "reference_conflict"


def test_top_up_rejects_non_integer_fen(shop_client: TestClient, shop: Shop) -> None:
    for amount in (12.5, 1250.0, "1250", 0, -100, 1_000_001, True, None):
        response = shop_client.post(
            f"/api/v1/wallets/{shop.student_id}/top-ups",
            json={"amount_fen": amount},
            headers=shop.headers["province_admin"],
        )

        assert response.status_code == 422, amount
        assert response.json()["code"] == "validation_failed", amount
        assert response.json()["details"][0]["field"] == "body.amount_fen", amount
    wallet = shop_client.get(
        f"/api/v1/wallets/{shop.student_id}", headers=shop.headers["province_admin"]
    )
    assert wallet.json()["balance_fen"] == INITIAL_BALANCE_FEN


def test_student_reads_own_wallet(shop_client: TestClient, shop: Shop) -> None:
    mine = shop_client.get("/api/v1/me/wallet", headers=shop.headers["student"])
    other = shop_client.get(f"/api/v1/wallets/{shop.student_id}", headers=shop.headers["student"])
    admin = shop_client.get(
        f"/api/v1/wallets/{shop.student_id}", headers=shop.headers["school_admin_a"]
    )

    assert mine.status_code == 200
    assert mine.json()["balance_fen"] == INITIAL_BALANCE_FEN
    assert mine.json()["held_fen"] == 0
    assert mine.json()["transactions"][0]["amount_fen"] == INITIAL_BALANCE_FEN
    assert other.status_code == 403
    assert admin.status_code == 200
    assert admin.json() == mine.json()


def test_wallet_rows_match_ledger(shop: Shop, seeded: sessionmaker[Session]) -> None:
    """The last transaction's balances equal the wallet's, after a mix of operations."""
    account = account_for_user(shop.student_id)
    with session_scope(seeded) as session:
        provider = CampusWalletProvider(session)
        first = provider.hold(account, 1_000, "purchase:l1")
        second = provider.hold(account, 2_000, "purchase:l2")
        provider.capture(first, 999)
        provider.release(second)
        provider.refund(first, 99, "dented can", "refund:l1")

    with seeded() as session:
        wallet = session.scalars(sa.select(Wallet).where(Wallet.user_id == shop.student_id)).one()
        last = session.scalars(
            sa.select(WalletTransaction)
            .where(WalletTransaction.wallet_id == wallet.id)
            .order_by(WalletTransaction.id.desc())
            .limit(1)
        ).one()
        assert wallet.balance_fen == INITIAL_BALANCE_FEN - 999 + 99
        assert wallet.held_fen == 0
        assert last.balance_after_fen == wallet.balance_fen
        assert last.held_after_fen == wallet.held_fen
