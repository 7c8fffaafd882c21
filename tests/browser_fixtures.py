"""Fixtures for the browser tests: headless Chromium driven by Playwright, a live server.

Test modules load this file with ``pytest_plugins = ["server_fixtures", "browser_fixtures"]``.
Chromium comes from Debian's package (/usr/bin/chromium, or the path in ZHIGUI_CHROMIUM);
without it the browser tests are skipped, or fail under CI=true.
"""

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, sync_playwright

from conftest import skip_or_fail
from server_helpers import TEST_PASSWORD

CHROMIUM_ENV = "ZHIGUI_CHROMIUM"
SERVER_START_TIMEOUT_S = 10.0
# Chromium's own network features are off: this machine reaches no other host, and the
# tests must not depend on one.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")


def chromium_path() -> str:
    path = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        skip_or_fail(f"Chromium not installed: apt-get install chromium, or set {CHROMIUM_ENV}")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        # Playwright gives every context a fresh, empty profile of its own.
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A page the size of a phone screen, as a student holds it in front of a cabinet."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


@contextlib.contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start the test server", pytrace=False)
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(SERVER_START_TIMEOUT_S)


def sign_in(page: Page, base_url: str, username: str, *, lang: str = "zh") -> None:
    """Sign in through the sign-in page with the test password."""
    page.goto(f"{base_url}/login?lang={lang}")
    page.fill("#username", username)
    page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def untranslated_texts(page: Page) -> list[str]:
    """Return the visible texts in Chinese on an English page, outside data values.

    Data (names of schools, products, counties) is marked lang="zh-CN" in the templates
    and may stay Chinese; every other text must be English.
    """
    texts: list[str] = page.evaluate(
        """() => {
            const found = [];
            const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            while (walker.nextNode()) {
                const node = walker.currentNode;
                const element = node.parentElement;
                if (!element || element.closest('[lang="zh-CN"], script, style')) continue;
                if (element.closest('[hidden]') || element.offsetParent === null) continue;
                const text = node.textContent.trim();
                if (text) found.push(text);
            }
            for (const input of document.querySelectorAll('input[placeholder], option')) {
                if (input.closest('[lang="zh-CN"]')) continue;
                const text = (input.placeholder || input.textContent || '').trim();
                if (text) found.push(text);
            }
            return found;
        }"""
    )
    return [text for text in texts if CJK.search(text)]
