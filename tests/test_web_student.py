"""The student's pages: scan to buy, the live purchase, receipts, the campus card.

The acceptance test buys through the page against a virtual cabinet (tests/campus_stack.py:
Mosquitto, ingest, a real kiosk-agent and a simulated board). The other tests run the
server in process, with the cabinet's progress and sale fed to ingest directly.

Set ZHIGUI_SCREENSHOT_DIR to a directory to have the acceptance test save a phone-sized
screenshot of each main page there.
"""

import html
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from browser_fixtures import CJK, live_server, untranslated_texts
from campus_stack import campus_stack
from fleet_server.app import create_app
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import session_scope
from fleet_server.core.security import issue_token
from fleet_server.ingest.store import BatchStore
from fleet_server.messaging.publisher import RecordingPublisher
from fleet_server.models import Cabinet, CabinetServiceStatus, Role
from fleet_server.web.session import CSRF_FIELD, SESSION_COOKIE, csrf_for
from kiosk_agent.contract import EventType
from purchase_helpers import (
    INITIAL_BALANCE_FEN,
    Shop,
    current_code,
    fund_wallet,
    kiosk_event,
    received,
    sale_record,
)
from server_helpers import TEST_PASSWORD, TEST_SECRET_KEY, World, add_user, token_for

pytest_plugins = ["server_fixtures", "purchase_fixtures", "browser_fixtures"]

HOLD_MAX_FEN = 3_000  # purchase_settings
PHONE_WIDTH = 390
LIVE_TIMEOUT_MS = 15_000
# The campus stack starts in about 10 s on two shared cores and the purchase takes a few
# seconds more, which leaves room for a slower machine.
STACK_TEST_TIMEOUT_S = 240
RECEIPT_TIMEOUT_MS = 60_000
STACK_STUDENT_BALANCE_FEN = 20_000
SCREENSHOT_DIR_ENV = "ZHIGUI_SCREENSHOT_DIR"
# Planogram prices of the shop's two products, so that a few packs stay within the hold.
SHELF_PRICES_FEN = (990, 590)
NOTICE = re.compile(r'data-testid="notice" data-key="([^"]+)">(.*?)</p>', re.S)


# --- Helpers ----------------------------------------------------------------------------------


def sign_in_client(client: TestClient, user_id: int) -> str:
    """Put a session cookie for ``user_id`` in the client and return its CSRF token."""
    token = token_for(user_id)
    client.cookies.set(SESSION_COOKIE, token)
    return csrf_for(token, TEST_SECRET_KEY.encode())


def sign_in_browser(page: Page, base_url: str, user_id: int) -> None:
    page.context.add_cookies(
        [{"name": SESSION_COOKIE, "value": token_for(user_id), "url": base_url}]
    )


def notice_of(response: httpx.Response) -> tuple[str, str]:
    """Return the catalog key and the text of the page's notice."""
    match = NOTICE.search(response.text)
    assert match is not None, f"no notice on the page (HTTP {response.status_code})"
    return match.group(1), html.unescape(match.group(2)).strip()


def has_start_button(response: httpx.Response) -> bool:
    return 'data-testid="start-purchase"' in response.text


def fen(page: Page, testid: str) -> int:
    value = page.get_by_test_id(testid).first.get_attribute("data-fen")
    assert value is not None, f"{testid} has no data-fen"
    return int(value)


@dataclass(frozen=True)
class ShownLine:
    name: str
    county: str
    quantity: int
    unit_fen: int
    amount_fen: int


def receipt_lines(page: Page) -> list[ShownLine]:
    rows = page.eval_on_selector_all(
        "[data-testid=receipt-line]",
        """rows => rows.map(row => ({
            name: row.querySelector('[data-testid=line-name]').textContent.trim(),
            county: row.querySelector('[data-testid=line-county]').textContent.trim(),
            quantity: Number(row.dataset.quantity),
            unit: Number(row.dataset.unitFen),
            amount: Number(row.querySelector('[data-testid=line-amount]').dataset.fen),
        }))""",
    )
    return [
        ShownLine(row["name"], row["county"], row["quantity"], row["unit"], row["amount"])
        for row in rows
    ]


def overflow_width(page: Page) -> int:
    """Return how far the page is wider than the viewport, in CSS pixels."""
    width: int = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return width


def save_planogram(client: TestClient, shop: Shop) -> None:
    body = {
        "shelves": [
            {
                "shelf": shelf,
                "capacity_items": 20,
                "products": [{"product_id": product.id, "price_fen": price}],
            }
            for shelf, (product, price) in enumerate(
                zip(shop.products, SHELF_PRICES_FEN, strict=True)
            )
        ]
    }
    response = client.put(
        f"/api/v1/cabinets/{shop.kiosk_id}/planogram", json=body, headers=shop.headers["operator_a"]
    )
    assert response.status_code == 200, response.json()


def start_by_api(client: TestClient, shop: Shop, headers: dict[str, str]) -> uuid.UUID:
    body = {"kiosk_id": shop.kiosk_id, "code": current_code(shop)}
    response = client.post("/api/v1/purchases", json=body, headers=headers)
    assert response.status_code == 201, response.json()
    return uuid.UUID(response.json()["id"])


def report_state(
    seeded: sessionmaker[Session], shop: Shop, purchase_id: uuid.UUID, state: str
) -> None:
    event = kiosk_event(
        shop.kiosk_id, EventType.SESSION_STATE, session_id=purchase_id, detail={"state": state}
    )
    BatchStore(seeded).commit([received(event)])


def report_sale(
    seeded: sessionmaker[Session], shop: Shop, purchase_id: uuid.UUID, quantities: list[int]
) -> None:
    lines = [
        (product, quantity, price, shelf)
        for shelf, (product, price, quantity) in enumerate(
            zip(shop.products, SHELF_PRICES_FEN, quantities, strict=True)
        )
        if quantity
    ]
    BatchStore(seeded).commit([received(sale_record(shop.kiosk_id, purchase_id, lines))])


def set_cabinet(seeded: sessionmaker[Session], kiosk_id: str, **values: object) -> None:
    with session_scope(seeded) as session:
        session.execute(sa.update(Cabinet).where(Cabinet.kiosk_id == kiosk_id).values(**values))


@pytest.fixture
def shop_server(
    purchase_settings: ServerSettings,
    engine: sa.Engine,
    publisher: RecordingPublisher,
    shop: Shop,
    shop_client: TestClient,
) -> Iterator[str]:
    """Base URL of a live server on the shop's database, with cabinet A's planogram saved."""
    save_planogram(shop_client, shop)
    app = create_app(purchase_settings, engine=engine, command_publisher=publisher)
    with live_server(app) as base_url:
        yield base_url


def screenshot(page: Page, name: str) -> None:
    directory = os.environ.get(SCREENSHOT_DIR_ENV)
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"student-{name}.png"), full_page=True)


# --- Acceptance: a purchase against a virtual cabinet -----------------------------------------


@pytest.mark.mosquitto
@pytest.mark.timeout(STACK_TEST_TIMEOUT_S)
def test_virtual_cabinet_purchase_gives_right_receipt(
    phone: Page,
    settings: ServerSettings,
    engine: sa.Engine,
    seeded: sessionmaker[Session],
    world: World,
    mqtt_broker: tuple[str, int],
    tmp_path: Path,
) -> None:
    with session_scope(seeded) as session:
        fund_wallet(session, world.student_id, STACK_STUDENT_BALANCE_FEN)
    hold_fen = min(STACK_STUDENT_BALANCE_FEN, settings.purchase_hold_max_fen)

    with campus_stack(
        settings=settings,
        engine=engine,
        broker=mqtt_broker,
        workdir=tmp_path / "campus",
        operator_user_id=world.operator_a_user_id,
        kiosk_ids=[world.a.kiosk_id],
    ) as stack:
        cabinet = stack.cabinets[world.a.kiosk_id]
        phone.goto(cabinet.purchase_url(stack.base_url))
        sign_in_url = phone.url
        phone.fill("#username", "student")
        phone.fill("#password", TEST_PASSWORD)
        phone.click("button[type=submit]")
        expect(phone.get_by_test_id("start-purchase")).to_be_visible()
        shown_products = phone.get_by_test_id("product-name").all_inner_texts()
        shown_counties = phone.get_by_test_id("product-county").all_inner_texts()
        shown_hold = fen(phone, "hold")
        screenshot(phone, "confirm")

        phone.get_by_test_id("start-purchase").click()
        cabinet.open_door_when_unlocked(0, actor="student")
        expect(phone.get_by_test_id("status-title")).to_have_text(
            "门已打开", timeout=LIVE_TIMEOUT_MS
        )
        expect(phone.get_by_test_id("status-hint")).to_have_text(
            "请取货后关门，关门后自动结算", timeout=LIVE_TIMEOUT_MS
        )
        screenshot(phone, "door-open")
        with cabinet.control() as control:
            for shelf, count in ((0, 2), (1, 1), (2, 1)):
                product = cabinet.shelf(shelf).board_id
                control.request("take", shelf=shelf, product=product, count=count, actor="student")
            # Changed their mind about the last pack.
            control.request("put", shelf=2, product=cabinet.shelf(2).board_id, actor="student")
            control.request("close_door", door=0, actor="student")
        expect(phone.get_by_test_id("receipt")).to_be_visible(timeout=RECEIPT_TIMEOUT_MS)
        lines = receipt_lines(phone)
        total = fen(phone, "receipt-total")
        charged = fen(phone, "receipt-charged")
        released = fen(phone, "receipt-released")
        balance_after = fen(phone, "receipt-balance-after")
        screenshot(phone, "receipt")
        kept = cabinet.kept_items()

        phone.get_by_role("link", name="返回我的校园卡").click()
        card_balance = fen(phone, "balance")
        history_status = phone.get_by_test_id("purchase-status").all_inner_texts()
        screenshot(phone, "me")

    expected = [
        ShownLine(
            name=cabinet.shelf(shelf).name,
            county=cabinet.shelf(shelf).county,
            quantity=count,
            unit_fen=cabinet.shelf(shelf).price_fen,
            amount_fen=count * cabinet.shelf(shelf).price_fen,
        )
        for shelf, count in sorted(kept.items())
    ]
    expected_total = sum(line.amount_fen for line in expected)
    assert "/login?next=" in sign_in_url
    assert shown_products == [shelf.name for shelf in cabinet.shelves]
    assert shown_counties == [shelf.county for shelf in cabinet.shelves]
    assert shown_hold == hold_fen
    assert kept == {0: 2, 1: 1}
    assert sorted(lines, key=lambda line: line.name) == sorted(expected, key=lambda line: line.name)
    assert total == expected_total
    assert charged == expected_total
    assert released == hold_fen - expected_total
    assert balance_after == STACK_STUDENT_BALANCE_FEN - expected_total
    assert card_balance == STACK_STUDENT_BALANCE_FEN - expected_total
    assert history_status == ["已支付"]


# --- Signing in and starting a purchase --------------------------------------------------------


def test_buy_signs_in_anonymous_student(shop_client: TestClient, shop: Shop) -> None:
    code = current_code(shop)
    buy_path = f"/buy/{shop.kiosk_id}?c={code}"

    anonymous = shop_client.get(buy_path, follow_redirects=False)
    signed_in = shop_client.post(
        "/login",
        data={"username": "student", "password": TEST_PASSWORD, "next": buy_path},
        follow_redirects=False,
    )
    confirm = shop_client.get(signed_in.headers["location"])

    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == f"/login?next=%2Fbuy%2F{shop.kiosk_id}%3Fc%3D{code}"
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == buy_path
    assert confirm.status_code == 200
    assert has_start_button(confirm)


def test_confirm_page_shows_cabinet_products_and_hold(shop_client: TestClient, shop: Shop) -> None:
    save_planogram(shop_client, shop)
    sign_in_client(shop_client, shop.student_id)

    page = shop_client.get(f"/buy/{shop.kiosk_id}?c={current_code(shop)}")

    text = page.text
    assert page.status_code == 200
    assert 'lang="zh-CN" data-testid="school">安徽大学<' in text
    assert 'lang="zh-CN" data-testid="building">学生公寓 1 号楼<' in text
    assert 'lang="zh-CN" data-testid="placement">一楼大厅东侧<' in text
    assert "1 楼" in text
    for product, price in zip(shop.products, SHELF_PRICES_FEN, strict=True):
        assert f'data-testid="product-name">{product.name}<' in text
        assert f'data-testid="product-county">{product.county_name}<' in text
        assert f'data-testid="product-price" data-fen="{price}"' in text
    assert f'data-testid="balance" data-fen="{INITIAL_BALANCE_FEN}"' in text
    assert f'data-testid="hold" data-fen="{HOLD_MAX_FEN}"' in text
    assert "开门前先冻结 30.00 元" in text
    assert has_start_button(page)


def test_start_redirects_to_live_page(
    shop_client: TestClient, shop: Shop, publisher: RecordingPublisher
) -> None:
    csrf = sign_in_client(shop_client, shop.student_id)

    started = shop_client.post(
        f"/buy/{shop.kiosk_id}?c={current_code(shop)}",
        data={CSRF_FIELD: csrf},
        follow_redirects=False,
    )
    live = shop_client.get(started.headers["location"])
    wallet = shop_client.get("/api/v1/me/wallet").json()

    assert started.status_code == 303
    assert re.fullmatch(r"/me/purchases/[0-9a-f-]{36}", started.headers["location"])
    assert len(publisher.commands) == 1
    assert wallet["held_fen"] == HOLD_MAX_FEN
    assert 'data-testid="status-title">正在开门<' in live.text
    assert 'id="purchase-texts"' in live.text


def test_start_without_csrf_token_is_rejected(
    shop_client: TestClient, shop: Shop, publisher: RecordingPublisher
) -> None:
    sign_in_client(shop_client, shop.student_id)

    forged = shop_client.post(
        f"/buy/{shop.kiosk_id}?c={current_code(shop)}", data={}, follow_redirects=False
    )

    assert forged.status_code == 403
    assert notice_of(forged) == ("error.csrf", "页面已过期，请刷新后重试")
    assert publisher.commands == []


# --- Every reason a purchase cannot start ------------------------------------------------------


FailureRequest = Callable[
    [TestClient, Shop, sessionmaker[Session], RecordingPublisher, str], httpx.Response
]


@dataclass(frozen=True)
class FailureCase:
    """A failure to set up and request in one language, with the status and texts expected."""

    request: FailureRequest
    status: int
    zh: str
    en: str
    button_stays: bool = False


def get_buy(
    client: TestClient, shop: Shop, code: str, lang: str, kiosk_id: str = ""
) -> httpx.Response:
    return client.get(f"/buy/{kiosk_id or shop.kiosk_id}?c={code}&lang={lang}")


def post_buy(client: TestClient, shop: Shop, user_id: int, code: str, lang: str) -> httpx.Response:
    csrf = sign_in_client(client, user_id)
    return client.post(
        f"/buy/{shop.kiosk_id}?c={code}&lang={lang}",
        data={CSRF_FIELD: csrf},
        follow_redirects=False,
    )


def unknown_cabinet(
    client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    publisher: RecordingPublisher,
    lang: str,
) -> httpx.Response:
    sign_in_client(client, shop.student_id)
    return get_buy(client, shop, current_code(shop), lang, kiosk_id="AH-99999-0001")


def code_expired(
    client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    publisher: RecordingPublisher,
    lang: str,
) -> httpx.Response:
    sign_in_client(client, shop.student_id)
    return get_buy(client, shop, current_code(shop, age_windows=3), lang)


def code_expired_when_pressed(
    client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    publisher: RecordingPublisher,
    lang: str,
) -> httpx.Response:
    return post_buy(client, shop, shop.student_id, current_code(shop, age_windows=3), lang)


def code_invalid(
    client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    publisher: RecordingPublisher,
    lang: str,
) -> httpx.Response:
    sign_in_client(client, shop.student_id)
    return get_buy(client, shop, "0123456789abcdef", lang)


def code_missing(
    client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    publisher: RecordingPublisher,
    lang: str,
) -> httpx.Response:
    sign_in_client(client, shop.student_id)
    return client.get(f"/buy/{shop.kiosk_id}?lang={lang}")


def code_not_ascii(
    client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    publisher: RecordingPublisher,
    lang: str,
) -> httpx.Response:
    return post_buy(client, shop, shop.student_id, "二维码", lang)


def balance_too_low(
    client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    publisher: RecordingPublisher,
    lang: str,
) -> httpx.Response:
    sign_in_client(client, shop.poor_student_id)
    return get_buy(client, shop, current_code(shop), lang)


def cabinet_offline(
    client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    publisher: RecordingPublisher,
    lang: str,
) -> httpx.Response:
    set_cabinet(seeded, shop.kiosk_id, online=False)
    sign_in_client(client, shop.student_id)
    return get_buy(client, shop, current_code(shop), lang)


def cabinet_out_of_service(
    client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    publisher: RecordingPublisher,
    lang: str,
) -> httpx.Response:
    set_cabinet(seeded, shop.kiosk_id, service_status=CabinetServiceStatus.OUT_OF_SERVICE)
    sign_in_client(client, shop.student_id)
    return get_buy(client, shop, current_code(shop), lang)


def cabinet_busy(
    client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    publisher: RecordingPublisher,
    lang: str,
) -> httpx.Response:
    # The first request of the case lets another student start a purchase at the cabinet.
    if lang == "zh":
        with session_scope(seeded) as session:
            other = add_user(
                session, "student-other", Role.STUDENT, school_id=shop.world.a.school_id
            )
            fund_wallet(session, other.id, INITIAL_BALANCE_FEN)
            other_id = other.id
        start_by_api(client, shop, {"Authorization": f"Bearer {token_for(other_id)}"})
    return post_buy(client, shop, shop.student_id, current_code(shop), lang)


def cabinet_unreachable(
    client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    publisher: RecordingPublisher,
    lang: str,
) -> httpx.Response:
    publisher.fail_next = True
    return post_buy(client, shop, shop.student_id, current_code(shop), lang)


FAILURES = {
    "unknown_cabinet": FailureCase(
        unknown_cabinet,
        404,
        "找不到这个柜子，请扫描柜子屏幕上的二维码",
        "This cabinet does not exist; scan the QR code on the cabinet screen",
    ),
    "code_expired": FailureCase(
        code_expired,
        200,
        "二维码已过期，请重新扫码",
        "The QR code has expired; scan the code on the cabinet screen again",
    ),
    "code_expired_when_pressed": FailureCase(
        code_expired_when_pressed,
        422,
        "二维码已过期，请重新扫码",
        "The QR code has expired; scan the code on the cabinet screen again",
    ),
    "code_invalid": FailureCase(
        code_invalid,
        200,
        "二维码无效，请重新扫描柜子屏幕上的二维码",
        "The QR code is not valid for this cabinet; scan the code on the cabinet screen again",
    ),
    "code_missing": FailureCase(
        code_missing,
        200,
        "链接中没有二维码信息，请扫描柜子屏幕上的二维码",
        "The link has no purchase code; scan the QR code on the cabinet screen",
    ),
    "code_not_ascii": FailureCase(
        code_not_ascii,
        422,
        "二维码无效，请重新扫描柜子屏幕上的二维码",
        "The QR code is not valid for this cabinet; scan the code on the cabinet screen again",
    ),
    "balance_too_low": FailureCase(
        balance_too_low,
        200,
        "余额不足：可用余额 0.50 元，至少需要 1.00 元。请先为校园卡充值",
        "Balance too low: 0.50 yuan available, at least 1.00 yuan needed. "
        "Top up your campus card first",
    ),
    "cabinet_offline": FailureCase(
        cabinet_offline,
        200,
        "柜子离线，请稍后再试或使用其他柜子",
        "The cabinet is offline; try again later or use another cabinet",
        button_stays=True,
    ),
    "cabinet_out_of_service": FailureCase(
        cabinet_out_of_service,
        200,
        "柜子暂停服务，请使用其他柜子",
        "The cabinet is out of service; use another cabinet",
    ),
    "cabinet_busy": FailureCase(
        cabinet_busy,
        409,
        "柜子正在使用中，请等上一位同学关门结算后再扫码",
        "Someone is using the cabinet; scan again once they have closed the door",
        button_stays=True,
    ),
    "cabinet_unreachable": FailureCase(
        cabinet_unreachable,
        503,
        "暂时无法连接柜子，未扣款，请稍后重试",
        "The cabinet could not be reached; nothing was charged, try again later",
        button_stays=True,
    ),
}


@pytest.mark.parametrize("case", FAILURES.values(), ids=FAILURES.keys())
def test_failure_message_in_both_languages(
    case: FailureCase,
    shop_client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    publisher: RecordingPublisher,
) -> None:
    chinese = case.request(shop_client, shop, seeded, publisher, "zh")
    english = case.request(shop_client, shop, seeded, publisher, "en")

    assert chinese.status_code == case.status
    assert english.status_code == case.status
    assert notice_of(chinese)[1] == case.zh
    assert notice_of(english)[1] == case.en
    assert has_start_button(chinese) is case.button_stays
    assert has_start_button(english) is case.button_stays
    assert not re.search(r"[A-Za-z]{4,}", notice_of(chinese)[1])
    assert not CJK.search(notice_of(english)[1])


def test_expired_sign_in_asks_to_sign_in_again(shop_client: TestClient, shop: Shop) -> None:
    expired = issue_token(
        secret=TEST_SECRET_KEY.encode(),
        user_id=shop.student_id,
        ttl_s=60,
        now_s=time.time() - 3600,
    )
    shop_client.cookies.set(SESSION_COOKIE, expired)
    buy_path = f"/buy/{shop.kiosk_id}?c={current_code(shop)}"

    redirected = shop_client.get(buy_path, follow_redirects=False)
    sign_in_page = shop_client.get(redirected.headers["location"])

    assert redirected.status_code == 303
    assert redirected.headers["location"].endswith("&expired=1")
    assert "登录已过期，请重新登录" in sign_in_page.text
    assert f'name="next" value="{html.escape(buy_path)}"' in sign_in_page.text


def test_staff_cannot_open_student_pages(shop_client: TestClient, shop: Shop) -> None:
    sign_in_client(shop_client, shop.world.operator_a_user_id)

    buy = shop_client.get(f"/buy/{shop.kiosk_id}?c={current_code(shop)}")
    card = shop_client.get("/me")

    assert buy.status_code == 403
    assert card.status_code == 403
    assert "没有权限访问此页面" in buy.text


def test_purchase_of_another_student_is_not_found(shop_client: TestClient, shop: Shop) -> None:
    purchase_id = start_by_api(shop_client, shop, shop.headers["student"])
    sign_in_client(shop_client, shop.poor_student_id)

    foreign = shop_client.get(f"/me/purchases/{purchase_id}")
    malformed = shop_client.get("/me/purchases/not-a-purchase")

    assert foreign.status_code == 404
    assert notice_of(foreign)[1] == "找不到这笔购物记录"
    assert malformed.status_code == 404


def test_running_purchase_blocks_second_start(shop_client: TestClient, shop: Shop) -> None:
    purchase_id = start_by_api(shop_client, shop, shop.headers["student"])
    sign_in_client(shop_client, shop.student_id)

    page = shop_client.get(f"/buy/{shop.kiosk_id}?c={current_code(shop)}")

    assert 'data-testid="active-purchase"' in page.text
    assert f'href="/me/purchases/{purchase_id}"' in page.text
    assert not has_start_button(page)


# --- Receipts, refunds and the campus card -----------------------------------------------------


def test_receipt_and_card_show_payment_and_refund(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    purchase_id = start_by_api(shop_client, shop, shop.headers["student"])
    report_sale(seeded, shop, purchase_id, [2, 1])
    first = shop.products[0]
    first_price, second_price = SHELF_PRICES_FEN
    total = 2 * first_price + second_price
    sale_id = shop_client.get(
        f"/api/v1/purchases/{purchase_id}", headers=shop.headers["student"]
    ).json()["sale_id"]
    refund = shop_client.post(
        f"/api/v1/sales/{sale_id}/refunds",
        json={"amount_fen": first_price, "reason": "包装破损", "reference": "refund-1"},
        headers=shop.headers["operator_a"],
    )
    assert refund.status_code == 201, refund.json()
    sign_in_client(shop_client, shop.student_id)

    receipt = shop_client.get(f"/me/purchases/{purchase_id}").text
    card = shop_client.get("/me").text

    assert 'data-testid="receipt"' in receipt
    assert 'id="purchase-texts"' not in receipt  # nothing left to follow
    assert f'data-testid="line-name">{first.name}<' in receipt
    assert f'data-testid="line-county">{first.county_name}<' in receipt
    assert f'data-testid="receipt-total" data-fen="{total}"' in receipt
    assert f'data-testid="receipt-charged" data-fen="{total}"' in receipt
    assert f'data-testid="receipt-released" data-fen="{HOLD_MAX_FEN - total}"' in receipt
    assert f'data-testid="receipt-refunded" data-fen="{first_price}"' in receipt
    assert (
        f'data-testid="receipt-balance-after" data-fen="{INITIAL_BALANCE_FEN - total}"' in receipt
    )
    assert 'data-testid="refund-amount"' in receipt
    assert "包装破损" in receipt
    assert f'data-testid="balance" data-fen="{INITIAL_BALANCE_FEN - total + first_price}"' in card
    assert 'data-testid="purchase-status">部分退款<' in card
    assert f'data-testid="purchase-refunded" data-fen="{first_price}"' in card
    assert 'data-kind="refund"' in card


def test_failed_unlock_shows_nothing_charged(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    purchase_id = start_by_api(shop_client, shop, shop.headers["student"])
    rejected = kiosk_event(
        shop.kiosk_id,
        EventType.COMMAND_REJECTED,
        session_id=purchase_id,
        detail={"reason": "busy"},
    )
    BatchStore(seeded).commit([received(rejected)])
    sign_in_client(shop_client, shop.student_id)

    page = shop_client.get(f"/me/purchases/{purchase_id}").text
    card = shop_client.get("/me").text

    assert 'data-testid="status-title">未能开门<' in page
    assert "柜子拒绝了开门指令" in page
    assert f'data-testid="receipt-released" data-fen="{HOLD_MAX_FEN}"' in page
    assert 'data-testid="receipt-charged" data-fen="0"' in page
    assert 'data-testid="purchase-status">未能开门<' in card


def test_empty_card_page(shop_client: TestClient, shop: Shop) -> None:
    sign_in_client(shop_client, shop.student_id)

    card = shop_client.get("/me?page=oops")

    assert card.status_code == 200
    assert f'data-testid="balance" data-fen="{INITIAL_BALANCE_FEN}"' in card.text
    assert "还没有购物记录" in card.text
    assert 'data-kind="top_up"' in card.text


def test_sticker_page_points_to_the_screen(shop_client: TestClient, shop: Shop) -> None:
    sticker = shop_client.get(f"/k/{shop.kiosk_id}")
    unknown = shop_client.get("/k/AH-99999-0001")

    assert sticker.status_code == 200
    assert "购物请扫描柜子屏幕上的二维码" in sticker.text
    assert 'data-testid="school">安徽大学<' in sticker.text
    assert unknown.status_code == 404


# --- In the browser ---------------------------------------------------------------------------


def test_live_page_follows_cabinet_to_receipt(
    page: Page, shop_server: str, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    sign_in_browser(page, shop_server, shop.student_id)
    page.goto(f"{shop_server}/buy/{shop.kiosk_id}?c={current_code(shop)}")
    page.get_by_test_id("start-purchase").click()
    title = page.get_by_test_id("status-title")
    hint = page.get_by_test_id("status-hint")
    purchase_id = uuid.UUID(page.url.rsplit("/", 1)[1])
    seen: list[tuple[str, str]] = [(title.inner_text(), hint.inner_text())]

    for state, expected_hint in (
        ("unlocked", "请拉开柜门取货"),
        ("door_open", "请取货后关门，关门后自动结算"),
        ("settling", "正在称重结算，请稍候"),
    ):
        report_state(seeded, shop, purchase_id, state)
        expect(hint).to_have_text(expected_hint, timeout=LIVE_TIMEOUT_MS)
        seen.append((title.inner_text(), hint.inner_text()))
    current_step = page.locator(".progress li.current").inner_text()
    report_sale(seeded, shop, purchase_id, [1, 2])
    expect(page.get_by_test_id("receipt")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    lines = receipt_lines(page)

    first, second = shop.products
    first_price, second_price = SHELF_PRICES_FEN
    assert seen == [
        ("正在开门", "请稍候，柜门马上打开"),
        ("门已打开", "请拉开柜门取货"),
        ("门已打开", "请取货后关门，关门后自动结算"),
        ("结算中", "正在称重结算，请稍候"),
    ]
    assert current_step == "关门结算"
    assert lines == [
        ShownLine(first.name, first.county_name, 1, first_price, first_price),
        ShownLine(second.name, second.county_name, 2, second_price, 2 * second_price),
    ]
    assert fen(page, "receipt-total") == first_price + 2 * second_price


def test_live_page_says_when_sign_in_expired(page: Page, shop_server: str, shop: Shop) -> None:
    purchase_id = start_by_api_on(shop_server, shop)
    sign_in_browser(page, shop_server, shop.student_id)
    page.goto(f"{shop_server}/me/purchases/{purchase_id}")
    expired = issue_token(
        secret=TEST_SECRET_KEY.encode(),
        user_id=shop.student_id,
        ttl_s=60,
        now_s=time.time() - 3600,
    )
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": expired, "url": shop_server}])

    error = page.get_by_test_id("live-error")
    expect(error).to_be_visible(timeout=LIVE_TIMEOUT_MS)

    assert error.inner_text().startswith("登录已过期，请重新登录")
    assert error.get_by_role("link").get_attribute("href") == (
        f"/login?next=%2Fme%2Fpurchases%2F{purchase_id}&expired=1"
    )


def start_by_api_on(base_url: str, shop: Shop) -> uuid.UUID:
    body = {"kiosk_id": shop.kiosk_id, "code": current_code(shop)}
    response = httpx.post(
        f"{base_url}/api/v1/purchases", json=body, headers=shop.headers["student"]
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def test_english_pages_translate_all_but_data(
    page: Page, shop_server: str, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    sign_in_browser(page, shop_server, shop.student_id)
    leftovers: dict[str, list[str]] = {}
    headings: dict[str, str] = {}

    page.goto(f"{shop_server}/buy/{shop.kiosk_id}?c={current_code(shop)}&lang=en")
    leftovers["confirm"] = untranslated_texts(page)
    headings["confirm"] = page.inner_text("h1")
    page.get_by_test_id("start-purchase").click()
    expect(page.get_by_test_id("status-title")).to_have_text("Opening the door")
    leftovers["live"] = untranslated_texts(page)
    purchase_id = uuid.UUID(page.url.rsplit("/", 1)[1])
    report_state(seeded, shop, purchase_id, "door_open")
    expect(page.get_by_test_id("status-title")).to_have_text("Door open", timeout=LIVE_TIMEOUT_MS)
    leftovers["door_open"] = untranslated_texts(page)
    report_sale(seeded, shop, purchase_id, [1, 1])
    expect(page.get_by_test_id("receipt")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    leftovers["receipt"] = untranslated_texts(page)
    headings["receipt"] = page.inner_text("h1")
    page.goto(f"{shop_server}/me")
    leftovers["me"] = untranslated_texts(page)
    headings["me"] = page.inner_text("h1")
    page.goto(f"{shop_server}/buy/AH-99999-0001?c=0")
    leftovers["unknown"] = untranslated_texts(page)
    page.goto(f"{shop_server}/me?lang=zh")
    chinese_heading = page.inner_text("h1")

    assert leftovers == {name: [] for name in leftovers}
    assert headings == {"confirm": "Scan to buy", "receipt": "Receipt", "me": "My campus card"}
    assert chinese_heading == "我的校园卡"


def test_language_switch_keeps_the_code(page: Page, shop_server: str, shop: Shop) -> None:
    sign_in_browser(page, shop_server, shop.student_id)
    code = current_code(shop)
    page.goto(f"{shop_server}/buy/{shop.kiosk_id}?c={code}")

    page.get_by_test_id("lang-switch").click()
    page.wait_for_url(re.compile(r"lang=en"))

    assert f"c={code}" in page.url
    assert page.get_by_test_id("start-purchase").inner_text() == "Confirm and open the door"


def test_pages_fit_a_phone_screen(
    phone: Page, shop_server: str, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    sign_in_browser(phone, shop_server, shop.student_id)
    overflow: dict[str, int] = {}

    phone.goto(f"{shop_server}/buy/{shop.kiosk_id}?c={current_code(shop)}")
    overflow["confirm"] = overflow_width(phone)
    button = phone.get_by_test_id("start-purchase").bounding_box()
    phone.get_by_test_id("start-purchase").click()
    expect(phone.get_by_test_id("status-title")).to_have_text("正在开门")
    overflow["live"] = overflow_width(phone)
    purchase_id = uuid.UUID(phone.url.rsplit("/", 1)[1])
    report_sale(seeded, shop, purchase_id, [3, 2])
    expect(phone.get_by_test_id("receipt")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    overflow["receipt"] = overflow_width(phone)
    phone.goto(f"{shop_server}/me?lang=en")
    overflow["me_en"] = overflow_width(phone)

    assert overflow == {"confirm": 0, "live": 0, "receipt": 0, "me_en": 0}
    assert button is not None
    assert button["x"] >= 0
    assert button["x"] + button["width"] <= PHONE_WIDTH
