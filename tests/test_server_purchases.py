"""The purchase flow: scan, hold, unlock, the cabinet's reports, receipt, refunds, expiry."""

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.app import create_app
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import session_scope
from fleet_server.ingest.store import BatchStore
from fleet_server.messaging.publisher import (
    BrokerAddress,
    MqttPublisher,
    RecordingPublisher,
    unlock_commands,
)
from fleet_server.models import (
    Cabinet,
    CabinetServiceStatus,
    HoldStatus,
    PaymentHold,
    PurchaseSession,
    PurchaseState,
    Sale,
)
from fleet_server.models.base import utc_now
from fleet_server.services.audit import list_audit_entries
from kiosk_agent.contract import (
    Channel,
    EventType,
    SaleOutcome,
    UnlockCommand,
    UnlockMode,
    kiosk_topic,
    parse_command,
)
from kiosk_agent.signing import NonceStore, verify_command
from purchase_helpers import (
    INITIAL_BALANCE_FEN,
    Shop,
    current_code,
    kiosk_event,
    received,
    sale_record,
    wallet_of,
)

pytest_plugins = ["server_fixtures", "purchase_fixtures"]

HOLD_MAX_FEN = 3_000  # purchase_settings
WAIT_S = 10.0


def start(
    client: TestClient, shop: Shop, *, user: str = "student", **overrides: Any
) -> httpx.Response:
    body: dict[str, Any] = {"kiosk_id": shop.kiosk_id, "code": current_code(shop)}
    body.update(overrides)
    return client.post("/api/v1/purchases", json=body, headers=shop.headers[user])


def started_purchase(client: TestClient, shop: Shop) -> uuid.UUID:
    response = start(client, shop)
    assert response.status_code == 201, response.json()
    return uuid.UUID(response.json()["id"])


def get_purchase(client: TestClient, shop: Shop, purchase_id: uuid.UUID) -> dict[str, Any]:
    response = client.get(f"/api/v1/purchases/{purchase_id}", headers=shop.headers["student"])
    assert response.status_code == 200, response.json()
    body: dict[str, Any] = response.json()
    return body


def set_cabinet(seeded: sessionmaker[Session], kiosk_id: str, **values: Any) -> None:
    with session_scope(seeded) as session:
        session.execute(sa.update(Cabinet).where(Cabinet.kiosk_id == kiosk_id).values(**values))


def move_deadline_to_past(seeded: sessionmaker[Session], purchase_id: uuid.UUID) -> None:
    with session_scope(seeded) as session:
        session.execute(
            sa.update(PurchaseSession)
            .where(PurchaseSession.id == purchase_id)
            .values(deadline_at=utc_now() - timedelta(seconds=1))
        )


# --- Starting a purchase ----------------------------------------------------------------------


def test_purchase_holds_and_unlocks(
    shop_client: TestClient,
    shop: Shop,
    publisher: RecordingPublisher,
    seeded: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    response = start(shop_client, shop)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["state"] == "unlock_sent"
    assert body["kiosk_id"] == shop.kiosk_id
    assert body["hold_amount_fen"] == HOLD_MAX_FEN
    assert body["payment_status"] == "pending"
    assert body["items"] == []
    [command] = unlock_commands(publisher)
    assert command.session_id == uuid.UUID(body["id"])
    assert command.kiosk_id == shop.kiosk_id
    assert command.mode is UnlockMode.PURCHASE
    assert command.door == 0
    lifetime_s = (command.expires_at - command.issued_at).total_seconds()
    assert lifetime_s == pytest.approx(15.0)
    with NonceStore(tmp_path / "nonces.db") as nonces:
        verify_command(
            command, key=shop.key, kiosk_id=shop.kiosk_id, now=utc_now(), nonce_store=nonces
        )
    with seeded() as session:
        wallet = wallet_of(session, shop.student_id)
        assert wallet.balance_fen == INITIAL_BALANCE_FEN
        assert wallet.held_fen == HOLD_MAX_FEN
        audit = list_audit_entries(session, object_type="purchase", object_id=body["id"])
        assert [entry.action for entry in audit] == ["payment.hold"]
        assert audit[0].actor_user_id == shop.student_id


def test_hold_is_balance_when_smaller(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    with session_scope(seeded) as session:
        wallet_of(session, shop.student_id).balance_fen = 1_234

    response = start(shop_client, shop)

    assert response.status_code == 201, response.json()
    assert response.json()["hold_amount_fen"] == 1_234


def test_purchase_code_checks(shop_client: TestClient, shop: Shop) -> None:
    expired = start(shop_client, shop, code=current_code(shop, age_windows=3))
    wrong = start(shop_client, shop, code="0123456789abcdef")
    other_cabinet = start(shop_client, shop, kiosk_id=shop.other_kiosk_id)
    missing = start(shop_client, shop, kiosk_id="AH-99999-9999")
    previous_window = start(shop_client, shop, code=current_code(shop, age_windows=1))

    assert expired.status_code == 422
    assert expired.json()["code"] == "purchase_code_expired"
    assert expired.json()["message"] == "二维码已过期，请重新扫码"
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "purchase_code_invalid"
    assert other_cabinet.status_code == 422
    assert other_cabinet.json()["code"] == "purchase_code_invalid"
    assert missing.status_code == 404
    assert missing.json()["code"] == "cabinet_not_found"
    assert previous_window.status_code == 201, previous_window.json()


def test_unavailable_cabinet_rejected(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    set_cabinet(seeded, shop.kiosk_id, online=False)
    offline = start(shop_client, shop)
    set_cabinet(
        seeded, shop.kiosk_id, online=True, service_status=CabinetServiceStatus.OUT_OF_SERVICE
    )
    out_of_service = start(shop_client, shop)
    set_cabinet(
        seeded, shop.kiosk_id, service_status=CabinetServiceStatus.IN_SERVICE, hmac_key=None
    )
    no_key = start(shop_client, shop, code="0123456789abcdef")

    assert offline.status_code == 409
    assert offline.json()["code"] == "cabinet_offline"
    assert offline.json()["message"].startswith("柜子离线")
    assert out_of_service.status_code == 409
    assert out_of_service.json()["code"] == "cabinet_out_of_service"
    assert no_key.status_code == 409
    assert no_key.json()["code"] == "cabinet_not_provisioned"
    with seeded() as session:
        assert wallet_of(session, shop.student_id).held_fen == 0


def test_busy_cabinet_rejected(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    first = start(shop_client, shop)

    second = start(shop_client, shop, user="student_poor")

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json()["code"] == "cabinet_busy"
    assert second.json()["message"].startswith("柜子正在使用中")


def test_low_balance_and_roles_rejected(
    shop_client: TestClient, shop: Shop, publisher: RecordingPublisher
) -> None:
    low = start(shop_client, shop, user="student_poor")
    operator = start(shop_client, shop, user="operator_a")
    doors = [start(shop_client, shop, door=door) for door in (1.0, "1", -1, 255)]

    assert low.status_code == 402
    assert low.json()["code"] == "balance_too_low"
    assert low.json()["message"].startswith("余额不足")
    assert "0.50" in low.json()["message"]
    assert operator.status_code == 403
    assert operator.json()["code"] == "permission_denied"
    for response in doors:
        assert response.status_code == 422
        assert response.json()["details"][0]["field"] == "body.door"
    assert publisher.commands == []


def test_publish_failure_releases_hold(
    shop_client: TestClient,
    shop: Shop,
    publisher: RecordingPublisher,
    seeded: sessionmaker[Session],
) -> None:
    publisher.fail_next = True

    response = start(shop_client, shop)

    assert response.status_code == 503
    assert response.json()["code"] == "cabinet_unreachable"
    assert "未扣款" in response.json()["message"]
    with seeded() as session:
        purchase = session.scalars(sa.select(PurchaseSession)).one()
        assert purchase.state is PurchaseState.FAILED
        assert purchase.failure_code == "publish_failed"
        assert purchase.hold.status is HoldStatus.RELEASED
        wallet = wallet_of(session, shop.student_id)
        assert wallet.held_fen == 0
        assert wallet.balance_fen == INITIAL_BALANCE_FEN
    retry = start(shop_client, shop)
    assert retry.status_code == 201, "a failed session does not keep the cabinet busy"


def test_app_without_broker_reports_unreachable(
    purchase_settings: ServerSettings, engine: sa.Engine, shop: Shop
) -> None:
    with TestClient(create_app(purchase_settings, engine=engine)) as client:
        response = start(client, shop)

    assert response.status_code == 503
    assert response.json()["code"] == "cabinet_unreachable"


# --- Following the session and settling it ----------------------------------------------------


def test_cabinet_reports_settle_purchase(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    purchase_id = started_purchase(shop_client, shop)
    store = BatchStore(seeded)
    tea, crisps = shop.products
    sale = sale_record(shop.kiosk_id, purchase_id, [(tea, 2, 350, 0), (crisps, 1, 590, 1)])

    store.commit(
        [
            received(
                kiosk_event(
                    shop.kiosk_id,
                    EventType.SESSION_STATE,
                    session_id=purchase_id,
                    detail={"state": "unlocked"},
                )
            )
        ]
    )
    unlocked = get_purchase(shop_client, shop, purchase_id)
    store.commit(
        [
            received(
                kiosk_event(
                    shop.kiosk_id,
                    EventType.SESSION_STATE,
                    session_id=purchase_id,
                    detail={"state": "door_open"},
                )
            )
        ]
    )
    door_open = get_purchase(shop_client, shop, purchase_id)
    result = store.commit([received(sale)])
    settled = get_purchase(shop_client, shop, purchase_id)

    assert unlocked["state"] == "unlocked"
    assert door_open["state"] == "door_open"
    assert result.new_sales == 1
    assert settled["state"] == "completed"
    assert settled["payment_status"] == "paid"
    assert settled["total_fen"] == 1_290
    assert settled["captured_fen"] == 1_290
    assert settled["sale_id"] == str(sale.sale_id)
    assert [
        (item["product_name"], item["quantity"], item["amount_fen"]) for item in settled["items"]
    ] == [
        (tea.name, 2, 700),
        (crisps.name, 1, 590),
    ]
    with seeded() as session:
        wallet = wallet_of(session, shop.student_id)
        assert wallet.balance_fen == INITIAL_BALANCE_FEN - 1_290
        assert wallet.held_fen == 0
        audit = list_audit_entries(session, object_type="purchase", object_id=purchase_id)
        assert [entry.action for entry in audit] == ["payment.hold", "payment.capture"]
        assert audit[1].after is not None
        assert audit[1].after["captured_fen"] == 1_290
        assert audit[1].after["released_fen"] == HOLD_MAX_FEN - 1_290


def test_receipt_lists_source_counties(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    purchase_id = started_purchase(shop_client, shop)
    not_ready = shop_client.get(
        f"/api/v1/purchases/{purchase_id}/receipt", headers=shop.headers["student"]
    )
    tea, crisps = shop.products
    BatchStore(seeded).commit(
        [received(sale_record(shop.kiosk_id, purchase_id, [(tea, 1, 350, 0), (crisps, 3, 590, 1)]))]
    )

    response = shop_client.get(
        f"/api/v1/purchases/{purchase_id}/receipt", headers=shop.headers["student"]
    )

    assert not_ready.status_code == 409
    assert not_ready.json()["code"] == "receipt_not_ready"
    assert response.status_code == 200, response.json()
    receipt = response.json()
    assert receipt["lines"] == [
        {
            "product_name": tea.name,
            "quantity": 1,
            "unit_price_fen": 350,
            "amount_fen": 350,
            "refunded_quantity": 0,
            "source_county_name": tea.county_name,
            "source_county_code": tea.county_code,
        },
        {
            "product_name": crisps.name,
            "quantity": 3,
            "unit_price_fen": 590,
            "amount_fen": 1_770,
            "refunded_quantity": 0,
            "source_county_name": crisps.county_name,
            "source_county_code": crisps.county_code,
        },
    ]
    assert receipt["total_fen"] == 2_120
    assert receipt["captured_fen"] == 2_120
    assert receipt["payment_status"] == "paid"
    assert receipt["review_needed"] is False


def test_empty_sales_release_everything(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    nothing_taken = started_purchase(shop_client, shop)
    BatchStore(seeded).commit(
        [received(sale_record(shop.kiosk_id, nothing_taken, outcome=SaleOutcome.NOTHING_TAKEN))]
    )
    not_opened = started_purchase(shop_client, shop)
    BatchStore(seeded).commit(
        [received(sale_record(shop.kiosk_id, not_opened, outcome=SaleOutcome.DOOR_NOT_OPENED))]
    )

    completed = get_purchase(shop_client, shop, nothing_taken)
    cancelled = get_purchase(shop_client, shop, not_opened)
    assert completed["state"] == "completed"
    assert completed["payment_status"] == "no_charge"
    assert completed["captured_fen"] == 0
    assert cancelled["state"] == "cancelled"
    assert cancelled["payment_status"] == "no_charge"
    with seeded() as session:
        wallet = wallet_of(session, shop.student_id)
        assert wallet.balance_fen == INITIAL_BALANCE_FEN
        assert wallet.held_fen == 0
        references = set(session.scalars(sa.select(PaymentHold.reference)))
        assert references == {f"purchase:{nothing_taken}", f"purchase:{not_opened}"}


def test_sale_above_hold_captures_hold(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    purchase_id = started_purchase(shop_client, shop)
    tea = shop.products[0]

    BatchStore(seeded).commit(
        [received(sale_record(shop.kiosk_id, purchase_id, [(tea, 8, 500, 0)]))]
    )

    purchase = get_purchase(shop_client, shop, purchase_id)
    assert purchase["total_fen"] == 4_000
    assert purchase["captured_fen"] == HOLD_MAX_FEN
    assert purchase["payment_status"] == "partially_paid"
    assert purchase["review_needed"] is True
    with seeded() as session:
        sale = session.scalars(sa.select(Sale)).one()
        assert sale.review_reasons == ["exceeds_hold"]
        assert wallet_of(session, shop.student_id).balance_fen == INITIAL_BALANCE_FEN - HOLD_MAX_FEN


def test_cabinet_progress_ignores_regressions(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    purchase_id = started_purchase(shop_client, shop)
    store = BatchStore(seeded)

    for state in ("settling", "unlocked", "door_open", "no_such_state"):
        store.commit(
            [
                received(
                    kiosk_event(
                        shop.kiosk_id,
                        EventType.SESSION_STATE,
                        session_id=purchase_id,
                        detail={"state": state},
                    )
                )
            ]
        )

    assert get_purchase(shop_client, shop, purchase_id)["state"] == "settling"


def test_other_cabinet_cannot_move_session(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    purchase_id = started_purchase(shop_client, shop)
    store = BatchStore(seeded)

    store.commit(
        [
            received(
                kiosk_event(
                    shop.other_kiosk_id,
                    EventType.SESSION_STATE,
                    session_id=purchase_id,
                    detail={"state": "door_open"},
                )
            )
        ]
    )
    store.commit(
        [received(sale_record(shop.other_kiosk_id, purchase_id, [(shop.products[0], 1, 350, 0)]))]
    )

    purchase = get_purchase(shop_client, shop, purchase_id)
    assert purchase["state"] == "unlock_sent"
    assert purchase["payment_status"] == "pending"
    with seeded() as session:
        sale = session.scalars(sa.select(Sale)).one()
        assert sale.review_reasons == ["session_cabinet_mismatch"]
        assert sale.captured_fen == 0
        assert sale.purchase_session_id is None


def test_rejected_unlock_releases_hold(
    shop_client: TestClient,
    shop: Shop,
    publisher: RecordingPublisher,
    seeded: sessionmaker[Session],
) -> None:
    """Rejections after which the cabinet sends no sale fail the session at once."""
    for reason, with_session_id in (("expired", False), ("bad_signature", False), ("busy", True)):
        purchase_id = started_purchase(shop_client, shop)
        command = unlock_commands(publisher)[-1]
        event = kiosk_event(
            shop.kiosk_id,
            EventType.COMMAND_REJECTED,
            session_id=purchase_id if with_session_id else None,
            detail={"command_id": str(command.command_id), "reason": reason},
        )

        BatchStore(seeded).commit([received(event)])

        purchase = get_purchase(shop_client, shop, purchase_id)
        assert purchase["state"] == "failed", reason
        assert purchase["failure_code"] == f"command_rejected:{reason}"
        assert purchase["payment_status"] == "released", reason
        with seeded() as session:
            assert wallet_of(session, shop.student_id).held_fen == 0, reason


def test_refusal_with_sale_waits_for_sale(
    shop_client: TestClient,
    shop: Shop,
    publisher: RecordingPublisher,
    seeded: sessionmaker[Session],
) -> None:
    purchase_id = started_purchase(shop_client, shop)
    [command] = unlock_commands(publisher)
    store = BatchStore(seeded)

    store.commit(
        [
            received(
                kiosk_event(
                    shop.kiosk_id,
                    EventType.COMMAND_REJECTED,
                    session_id=purchase_id,
                    detail={"command_id": str(command.command_id), "reason": "lock_fault"},
                )
            )
        ]
    )
    waiting = get_purchase(shop_client, shop, purchase_id)
    store.commit([received(sale_record(shop.kiosk_id, purchase_id, outcome=SaleOutcome.CANCELLED))])

    assert waiting["state"] == "unlock_sent"
    assert get_purchase(shop_client, shop, purchase_id)["state"] == "cancelled"


# --- Expiry -----------------------------------------------------------------------------------


def test_expired_session_keeps_hold_until_sale(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    purchase_id = started_purchase(shop_client, shop)
    move_deadline_to_past(seeded, purchase_id)

    expired = get_purchase(shop_client, shop, purchase_id)
    with seeded() as session:
        held_while_expired = wallet_of(session, shop.student_id).held_fen
    next_student = start(shop_client, shop, user="student_poor")
    BatchStore(seeded).commit(
        [received(sale_record(shop.kiosk_id, purchase_id, [(shop.products[0], 1, 800, 0)]))]
    )
    settled = get_purchase(shop_client, shop, purchase_id)

    assert expired["state"] == "expired"
    assert expired["payment_status"] == "pending"
    assert held_while_expired == HOLD_MAX_FEN
    assert next_student.status_code == 402, "the expired session does not keep the cabinet busy"
    assert settled["state"] == "completed"
    assert settled["captured_fen"] == 800
    with seeded() as session:
        wallet = wallet_of(session, shop.student_id)
        assert wallet.held_fen == 0
        assert wallet.balance_fen == INITIAL_BALANCE_FEN - 800


def test_operator_releases_expired_hold(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    purchase_id = started_purchase(shop_client, shop)
    path = f"/api/v1/purchases/{purchase_id}/release"
    body = {"reason": "柜子断网超过一天，人工核实未取货"}
    too_early = shop_client.post(path, json=body, headers=shop.headers["operator_a"])
    move_deadline_to_past(seeded, purchase_id)

    other_operator = shop_client.post(path, json=body, headers=shop.headers["operator_b"])
    student = shop_client.post(path, json=body, headers=shop.headers["student"])
    released = shop_client.post(path, json=body, headers=shop.headers["operator_a"])
    BatchStore(seeded).commit(
        [received(sale_record(shop.kiosk_id, purchase_id, [(shop.products[0], 1, 800, 0)]))]
    )

    assert too_early.status_code == 409
    assert too_early.json()["code"] == "purchase_not_expired"
    assert other_operator.status_code == 404
    assert student.status_code == 403
    assert released.status_code == 200, released.json()
    assert released.json()["state"] == "cancelled"
    assert released.json()["failure_code"] == "released_by_staff"
    late = get_purchase(shop_client, shop, purchase_id)
    assert late["payment_status"] == "unpaid"
    assert late["review_needed"] is True
    with seeded() as session:
        wallet = wallet_of(session, shop.student_id)
        assert wallet.balance_fen == INITIAL_BALANCE_FEN
        assert wallet.held_fen == 0
        sale = session.scalars(sa.select(Sale)).one()
        assert sale.review_reasons == ["hold_not_open"]
        assert sale.captured_fen == 0
        audit = list_audit_entries(session, object_type="purchase", object_id=purchase_id)
        assert [entry.action for entry in audit] == ["payment.hold", "payment.release"]
        assert audit[1].actor_user_id == shop.world.operator_a_user_id
        assert audit[1].after is not None
        assert audit[1].after["note"] == body["reason"]


# --- History, visibility ----------------------------------------------------------------------


def test_student_history_and_privacy(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    purchase_id = started_purchase(shop_client, shop)
    BatchStore(seeded).commit(
        [received(sale_record(shop.kiosk_id, purchase_id, outcome=SaleOutcome.NOTHING_TAKEN))]
    )
    second_id = started_purchase(shop_client, shop)

    history = shop_client.get("/api/v1/me/purchases", headers=shop.headers["student"])
    other_student = shop_client.get(
        f"/api/v1/purchases/{purchase_id}", headers=shop.headers["student_poor"]
    )
    other_history = shop_client.get("/api/v1/me/purchases", headers=shop.headers["student_poor"])
    operator = shop_client.get(
        f"/api/v1/purchases/{purchase_id}", headers=shop.headers["operator_a"]
    )
    operator_b = shop_client.get(
        f"/api/v1/purchases/{purchase_id}", headers=shop.headers["operator_b"]
    )

    assert history.status_code == 200
    assert [item["id"] for item in history.json()["items"]] == [str(second_id), str(purchase_id)]
    assert history.json()["total"] == 2
    assert other_student.status_code == 404
    assert other_student.json()["code"] == "purchase_not_found"
    assert other_history.json()["items"] == []
    assert operator.status_code == 200
    assert operator_b.status_code == 404


# --- Refunds ----------------------------------------------------------------------------------


def settled_sale(shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]) -> str:
    purchase_id = started_purchase(shop_client, shop)
    tea, crisps = shop.products
    record = sale_record(shop.kiosk_id, purchase_id, [(tea, 2, 350, 0), (crisps, 1, 590, 1)])
    BatchStore(seeded).commit([received(record)])
    return str(record.sale_id)


def test_operator_refunds_amount(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    sale_id = settled_sale(shop_client, shop, seeded)
    path = f"/api/v1/sales/{sale_id}/refunds"
    headers = shop.headers["operator_a"]
    body = {"amount_fen": 590, "reason": "梨片包装破损", "reference": "ticket-17"}

    first = shop_client.post(path, json=body, headers=headers)
    repeated = shop_client.post(path, json=body, headers=headers)
    too_much = shop_client.post(path, json={"amount_fen": 701, "reason": "x"}, headers=headers)
    rest = shop_client.post(path, json={"amount_fen": 700, "reason": "全部退款"}, headers=headers)
    nothing_left = shop_client.post(path, json={"amount_fen": 1, "reason": "x"}, headers=headers)

    assert first.status_code == 201, first.json()
    assert first.json()["amount_fen"] == 590
    assert repeated.status_code == 200
    assert repeated.json()["id"] == first.json()["id"]
    assert too_much.status_code == 422
    assert too_much.json()["code"] == "refund_exceeds_captured"
    assert rest.status_code == 201
    assert nothing_left.status_code == 422
    sale = shop_client.get(f"/api/v1/sales/{sale_id}", headers=headers).json()
    assert sale["captured_fen"] == 1_290
    assert sale["refunded_fen"] == 1_290
    assert [refund["amount_fen"] for refund in sale["refunds"]] == [590, 700]
    with seeded() as session:
        assert wallet_of(session, shop.student_id).balance_fen == INITIAL_BALANCE_FEN
        audit = list_audit_entries(session, object_type="sale", object_id=sale_id)
        assert [entry.action for entry in audit] == ["payment.refund", "payment.refund"]
        assert audit[0].actor_user_id == shop.world.operator_a_user_id
    receipt = shop_client.get(
        f"/api/v1/purchases/{sale['purchase_id']}/receipt", headers=shop.headers["student"]
    ).json()
    assert receipt["payment_status"] == "refunded"


def test_school_admin_refunds_lines(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    sale_id = settled_sale(shop_client, shop, seeded)
    headers = shop.headers["school_admin_a"]
    sale = shop_client.get(f"/api/v1/sales/{sale_id}", headers=headers).json()
    tea_line = sale["lines"][0]["line_id"]
    path = f"/api/v1/sales/{sale_id}/refunds"

    one_tea = shop_client.post(
        path,
        json={"lines": [{"line_id": tea_line, "quantity": 1}], "reason": "临期"},
        headers=headers,
    )
    too_many = shop_client.post(
        path, json={"lines": [{"line_id": tea_line, "quantity": 2}], "reason": "x"}, headers=headers
    )
    foreign_line = shop_client.post(
        path, json={"lines": [{"line_id": 999_999, "quantity": 1}], "reason": "x"}, headers=headers
    )

    assert one_tea.status_code == 201, one_tea.json()
    assert one_tea.json()["amount_fen"] == 350
    assert one_tea.json()["lines"] == [{"line_id": tea_line, "quantity": 1, "amount_fen": 350}]
    assert too_many.status_code == 422
    assert too_many.json()["code"] == "refund_line_invalid"
    assert foreign_line.status_code == 422
    refreshed = shop_client.get(f"/api/v1/sales/{sale_id}", headers=headers).json()
    assert refreshed["lines"][0]["refunded_quantity"] == 1
    assert refreshed["refunded_fen"] == 350


def test_refund_scope_and_money_types(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    sale_id = settled_sale(shop_client, shop, seeded)
    path = f"/api/v1/sales/{sale_id}/refunds"
    body = {"amount_fen": 100, "reason": "x"}

    other_operator = shop_client.post(path, json=body, headers=shop.headers["operator_b"])
    other_school = shop_client.post(path, json=body, headers=shop.headers["school_admin_b"])
    student = shop_client.post(path, json=body, headers=shop.headers["student"])
    both = shop_client.post(
        path,
        json={**body, "lines": [{"line_id": 1, "quantity": 1}]},
        headers=shop.headers["operator_a"],
    )
    float_amounts = [
        shop_client.post(
            path, json={"amount_fen": amount, "reason": "x"}, headers=shop.headers["operator_a"]
        )
        for amount in (100.0, 99.5, "100")
    ]

    assert other_operator.status_code == 404
    assert other_operator.json()["code"] == "sale_not_found"
    assert other_school.status_code == 404
    assert student.status_code == 403
    assert both.status_code == 422
    for response in float_amounts:
        assert response.status_code == 422
        assert response.json()["details"][0]["field"] == "body.amount_fen"
    with seeded() as session:
        assert wallet_of(session, shop.student_id).balance_fen == INITIAL_BALANCE_FEN - 1_290


def test_staff_list_sales_to_review(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    settled_sale(shop_client, shop, seeded)
    BatchStore(seeded).commit(
        [received(sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 1, 350, 0)]))]
    )

    flagged = shop_client.get(
        "/api/v1/sales", params={"review_needed": True}, headers=shop.headers["operator_a"]
    ).json()
    everything = shop_client.get("/api/v1/sales", headers=shop.headers["operator_a"]).json()
    other = shop_client.get("/api/v1/sales", headers=shop.headers["operator_b"]).json()

    assert flagged["total"] == 1
    assert flagged["items"][0]["review_reasons"] == ["unknown_session"]
    assert flagged["items"][0]["purchase_id"] is None
    assert everything["total"] == 2
    assert other["total"] == 0


# --- Live view (Server-Sent Events) ------------------------------------------------------------


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_events_end_at_terminal_state(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    purchase_id = started_purchase(shop_client, shop)
    BatchStore(seeded).commit(
        [received(sale_record(shop.kiosk_id, purchase_id, outcome=SaleOutcome.NOTHING_TAKEN))]
    )

    response = shop_client.get(
        f"/api/v1/purchases/{purchase_id}/events", headers=shop.headers["student"]
    )
    hidden = shop_client.get(
        f"/api/v1/purchases/{purchase_id}/events", headers=shop.headers["student_poor"]
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert [(name, data["state"]) for name, data in events] == [("purchase", "completed")]
    assert hidden.status_code == 404


@contextlib.contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(WAIT_S)


def test_events_follow_live_changes(
    purchase_settings: ServerSettings,
    engine: sa.Engine,
    shop: Shop,
    seeded: sessionmaker[Session],
) -> None:
    app = create_app(purchase_settings, engine=engine, command_publisher=RecordingPublisher())
    store = BatchStore(seeded)
    with running_server(app) as base_url, httpx.Client(base_url=base_url, timeout=WAIT_S) as http:
        body = {"kiosk_id": shop.kiosk_id, "code": current_code(shop)}
        purchase_id = http.post(
            "/api/v1/purchases", json=body, headers=shop.headers["student"]
        ).json()["id"]
        states = []
        with http.stream(
            "GET", f"/api/v1/purchases/{purchase_id}/events", headers=shop.headers["student"]
        ) as stream:
            lines = stream.iter_lines()
            for line in lines:
                if not line.startswith("data: "):
                    continue
                state = json.loads(line.removeprefix("data: "))["state"]
                states.append(state)
                if state == "unlock_sent":
                    store.commit(
                        [
                            received(
                                kiosk_event(
                                    shop.kiosk_id,
                                    EventType.SESSION_STATE,
                                    session_id=uuid.UUID(purchase_id),
                                    detail={"state": "door_open"},
                                )
                            )
                        ]
                    )
                elif state == "door_open":
                    store.commit(
                        [
                            received(
                                sale_record(
                                    shop.kiosk_id,
                                    uuid.UUID(purchase_id),
                                    [(shop.products[0], 1, 350, 0)],
                                )
                            )
                        ]
                    )

    assert states == ["unlock_sent", "door_open", "completed"]


# --- MQTT ---------------------------------------------------------------------------------------


@pytest.mark.mosquitto
def test_unlock_reaches_cabinet_topic(
    purchase_settings: ServerSettings,
    engine: sa.Engine,
    shop: Shop,
    mqtt_broker: tuple[str, int],
    tmp_path: Path,
) -> None:
    received_commands: list[bytes] = []
    arrived = threading.Event()
    subscribed = threading.Event()
    cabinet = mqtt.Client(CallbackAPIVersion.VERSION2)
    cabinet.on_subscribe = lambda *args: subscribed.set()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        received_commands.append(message.payload)
        arrived.set()

    cabinet.on_message = on_message
    cabinet.connect(*mqtt_broker)
    cabinet.loop_start()
    cabinet.subscribe(kiosk_topic(shop.kiosk_id, Channel.COMMANDS), qos=1)
    publisher = MqttPublisher(BrokerAddress(*mqtt_broker))
    try:
        assert subscribed.wait(WAIT_S)
        publisher.start()
        app = create_app(purchase_settings, engine=engine, command_publisher=publisher)
        with TestClient(app) as client:
            response = start(client, shop)
        assert arrived.wait(WAIT_S)
    finally:
        publisher.stop()
        cabinet.loop_stop()
        cabinet.disconnect()

    assert response.status_code == 201, response.json()
    command = parse_command(received_commands[0])
    assert isinstance(command, UnlockCommand)
    assert str(command.session_id) == response.json()["id"]
    with NonceStore(tmp_path / "nonces.db") as nonces:
        verify_command(
            command, key=shop.key, kiosk_id=shop.kiosk_id, now=utc_now(), nonce_store=nonces
        )
