"""The pages common to every visitor: sign-in, language switch, redirects, session and CSRF."""

from fastapi.testclient import TestClient
from playwright.sync_api import Page

from browser_fixtures import live_server, sign_in, untranslated_texts
from fleet_server.app import create_app
from fleet_server.core.config import ServerSettings
from server_helpers import World

pytest_plugins = ["server_fixtures", "browser_fixtures"]


def test_sign_in_page_is_chinese_then_english(
    page: Page, settings: ServerSettings, engine: object, world: World
) -> None:
    with live_server(create_app(settings, engine=engine)) as base_url:  # type: ignore[arg-type]
        page.goto(f"{base_url}/")
        chinese_heading = page.inner_text("h1")
        chinese_lang = page.get_attribute("html", "lang")
        page.click("[data-testid=lang-switch]")
        english_heading = page.inner_text("h1")
        leftovers = untranslated_texts(page)
        page.goto(f"{base_url}/login")  # the choice is remembered
        remembered = page.inner_text("h1")

    assert chinese_heading == "登录"
    assert chinese_lang == "zh-CN"
    assert english_heading == "Sign in"
    assert leftovers == []
    assert remembered == "Sign in"


def test_failed_sign_in_keeps_the_username(
    page: Page, settings: ServerSettings, engine: object, world: World
) -> None:
    with live_server(create_app(settings, engine=engine)) as base_url:  # type: ignore[arg-type]
        page.goto(f"{base_url}/login")
        page.fill("#username", "admin-ahu")
        page.fill("#password", "wrong password")
        page.click("button[type=submit]")
        error = page.inner_text("[data-testid=form-error]")
        kept = page.input_value("#username")
        password_after = page.input_value("#password")

        sign_in(page, base_url, "admin-ahu")
        landed = page.url

    assert error == "用户名或密码错误"
    assert kept == "admin-ahu"
    assert password_after == ""
    assert landed.endswith("/school")


def test_pages_need_sign_in_and_the_right_role(client: TestClient, world: World) -> None:
    anonymous = client.get("/province", follow_redirects=False)
    outside = client.get("/login?next=//evil.example/", follow_redirects=False)

    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=%2Fprovince"
    assert 'name="next" value="/"' in outside.text


def test_api_accepts_the_cookie_only_with_csrf_for_changes(
    client: TestClient, world: World
) -> None:
    signed_in = client.post(
        "/login",
        data={"username": "admin-ahu", "password": "correct horse battery staple"},
        follow_redirects=False,
    )
    me = client.get("/api/v1/auth/me")
    forged = client.post(f"/api/v1/schools/{world.a.school_id}/procurement/entries", json={})

    assert signed_in.status_code == 303
    assert me.status_code == 200
    assert me.json()["username"] == "admin-ahu"
    assert forged.status_code == 401
    assert forged.json()["code"] == "csrf_token_invalid"
