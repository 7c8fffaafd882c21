"""Bad input on the pages and in their files: a clear error, never a 500, nothing lost."""

import io
import zipfile
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from openpyxl import Workbook, load_workbook
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.db import session_scope
from fleet_server.core.security import TokenInvalidError, verify_token
from fleet_server.models import Building, ProcurementEntry, School
from fleet_server.services.errors import InvalidInputError
from fleet_server.services.procurement_import import MAX_COLUMNS, parse_entries, read_rows
from server_helpers import TEST_PASSWORD, TEST_SECRET_KEY, World

pytest_plugins = ["server_fixtures"]


def signed_in(client: TestClient, username: str) -> str:
    """Sign in through the page and return the CSRF token of the session."""
    client.post("/login", data={"username": username, "password": TEST_PASSWORD})
    page = client.get("/school/import" if username.startswith("admin") else "/province")
    marker = 'name="csrf-token" content="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


def ledger_form(csrf: str, **fields: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf,
        "occurred_on": "2026-11-18",
        "channel": "canteen",
        "product_name": "大米",
        "county_code": "341524",
        "supplier": "合作社",
        "quantity": "10",
        "unit": "袋",
        "amount_yuan": "100",
        "voucher_ref": "FP-1",
    }
    form.update(fields)
    return form


def entries(seeded: sessionmaker[Session]) -> int:
    with seeded() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(ProcurementEntry)) or 0


def test_non_ascii_tokens_are_refused_not_crashed(client: TestClient, world: World) -> None:
    signed_in(client, "admin-ahu")

    form = client.post("/school/ledger", data={"csrf_token": "令牌"})
    api = client.post(
        f"/api/v1/schools/{world.a.school_id}/procurement/entries",
        json={},
        headers={"X-CSRF-Token": "令牌".encode()},
    )

    assert form.status_code == 403
    assert "页面已过期" in form.text
    assert api.status_code == 401
    assert api.json()["code"] == "csrf_token_invalid"
    with pytest.raises(TokenInvalidError, match="ASCII"):
        verify_token("v1.令.牌", secret=TEST_SECRET_KEY.encode())


@pytest.mark.parametrize("amount", ["9" * 40, "1e999999999", "-5", "12.345"])
def test_absurd_amounts_get_a_message_next_to_the_field(
    client: TestClient, world: World, seeded: sessionmaker[Session], amount: str
) -> None:
    csrf = signed_in(client, "admin-ahu")

    response = client.post("/school/ledger", data=ledger_form(csrf, amount_yuan=amount))

    assert response.status_code == 422
    assert 'data-testid="error-amount_yuan">请输入正数金额，最多两位小数' in response.text
    assert f'value="{amount}"' in response.text
    assert entries(seeded) == 0


@pytest.mark.parametrize("day", ["1764547200", "1900-01-01"])
def test_dates_must_be_written_out_and_recent(
    client: TestClient, world: World, seeded: sessionmaker[Session], day: str
) -> None:
    csrf = signed_in(client, "admin-ahu")

    response = client.post("/school/ledger", data=ledger_form(csrf, occurred_on=day))

    assert response.status_code == 422
    assert 'data-testid="error-occurred_on"' in response.text
    assert entries(seeded) == 0


def test_import_redirects_so_a_reload_cannot_import_twice(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    csrf = signed_in(client, "admin-ahu")
    csv_file = (
        "采购日期,采购渠道,产品名称,产品来源县区划代码,供应商,数量,单位,金额（元）,凭证号\n"
        "2026-11-18,食堂,大米,\uff13\uff14\uff11\uff15\uff12\uff14,合作社,10,袋,\uff11\uff12\uff13,FP-1\n"
    ).encode()

    response = client.post(
        "/school/import",
        data={"csrf_token": csrf},
        files={"file": ("ledger.csv", csv_file, "text/csv")},
        follow_redirects=False,
    )
    result = client.get(response.headers["location"])

    assert response.status_code == 303
    assert response.headers["location"].startswith("/school/import?batch=")
    assert "已导入 1 条" in result.text
    assert "123.00 元" in result.text
    with seeded() as session:
        saved = session.scalars(sa.select(ProcurementEntry)).one()
        assert saved.county_code == "341524"  # full-width digits read as digits
        assert saved.amount_fen == 12_300


def test_damaged_and_inflated_workbooks() -> None:
    buffer = io.BytesIO()
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(
        ["采购日期", "采购渠道", "产品名称", "供应商", "数量", "单位", "金额（元）", "凭证号"]
    )
    sheet.append(["2026-11-18", "食堂", "大米", "合作社", 1, "袋", 10, "FP-1"])
    sheet.cell(row=2, column=16_384, value="far away")
    workbook.save(buffer)
    inflated = buffer.getvalue()

    damaged = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(inflated)) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("sheet1.xml"):
                data = data[: len(data) // 2]
            target.writestr(item, data)

    rows = read_rows(inflated)
    parsed = parse_entries(inflated)
    with pytest.raises(InvalidInputError, match="cannot be read"):
        read_rows(damaged.getvalue())

    assert all(len(row) <= MAX_COLUMNS for row in rows)
    assert [entry.amount_fen for entry in parsed] == [1_000]


def test_plan_form_refuses_superscript_digits(client: TestClient, world: World) -> None:
    with client:
        csrf = signed_in(client, "admin-ahu")
        response = client.post(
            "/school/plan", data={"csrf_token": csrf, "students_per_cabinet": "²"}
        )

    assert response.status_code == 422
    assert 'data-testid="error-students_per_cabinet"' in response.text


def test_full_width_kiosk_id_is_refused(client: TestClient, world: World) -> None:
    response = client.post(
        "/api/v1/cabinets",
        json={
            "kiosk_id": "AH-\uff10\uff10\uff10\uff11\uff13-0001",
            "placement_id": world.a.placement_id,
            "operator_id": world.operator_a_id,
        },
        headers=world.headers["province_admin"],
    )

    assert response.status_code == 422


def test_exported_names_never_become_formulas(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    formula = '=HYPERLINK("http://127.0.0.1:9/x","点我")'
    with session_scope(seeded) as session:
        session.execute(
            sa.update(Building).where(Building.id == world.a.building_id).values(name=formula)
        )
        session.execute(
            sa.update(School).where(School.id == world.a.school_id).values(enrollment=5_000)
        )

    response = client.post(
        f"/api/v1/schools/{world.a.school_id}/placement-plan/recommendation/export",
        json={},
        headers=world.headers["school_admin_a"],
    )

    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    cells: list[Any] = [cell for row in sheet.iter_rows() for cell in row if cell.value == formula]
    assert cells
    assert all(cell.data_type == "s" for cell in cells)


def test_page_errors_are_pages_in_chinese(client: TestClient, world: World) -> None:
    signed_in(client, "admin-ahu")

    bad_week = client.get("/school/reports/abc")
    ancient = client.get("/school/reports/0001-01-01")
    missing = client.get("/school/nothing")

    assert bad_week.status_code == 422
    assert bad_week.headers["content-type"].startswith("text/html")
    assert "必须是日期" in bad_week.text
    assert "统计周期须在" in ancient.text
    assert missing.status_code == 404
    assert "页面不存在" in missing.text


def test_sign_out_forgets_the_cookie_even_from_an_old_page(
    client: TestClient, world: World
) -> None:
    signed_in(client, "admin-ahu")

    response = client.post("/logout", data={"csrf_token": "stale"}, follow_redirects=False)
    after = client.get("/school", follow_redirects=False)

    assert response.status_code == 303
    assert after.status_code == 303
    assert after.headers["location"].startswith("/login")
