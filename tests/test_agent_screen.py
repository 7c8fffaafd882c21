"""The cabinet screen's page, state and QR code over real HTTP."""

import json
import urllib.request
from collections.abc import Iterator

import pytest

from kiosk_agent.purchase_code import verify_code
from kiosk_agent.screen import CabinetScreen, ScreenMode, ScreenProduct, ScreenSnapshot

KEY = bytes(range(32))


@pytest.fixture
def screen() -> Iterator[tuple[CabinetScreen, str]]:
    cabinet_screen = CabinetScreen(kiosk_id="AH-1", key=KEY, server_url="http://127.0.0.1:9")
    port = cabinet_screen.start("127.0.0.1", 0)
    yield cabinet_screen, f"http://127.0.0.1:{port}"
    cabinet_screen.stop()


def _get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode()


def test_ready_screen_shows_chinese_and_products(screen: tuple[CabinetScreen, str]) -> None:
    cabinet_screen, base = screen
    cabinet_screen.publish(
        ScreenSnapshot(
            ScreenMode.READY,
            products=(ScreenProduct("岳西翠兰", 3_850, "岳西县", sample_price=True),),
        )
    )

    content_type, page = _get(base + "/")
    _, state = _get(base + "/state.json")

    assert content_type.startswith("text/html")
    assert "岳西翠兰" in page
    assert "¥38.50" in page
    assert "示例价格" in page
    assert json.loads(state)["title"] == "请扫码购物"
    assert json.loads(state)["show_qr"] is True


@pytest.mark.parametrize(
    ("mode", "reason", "zh", "en"),
    [
        (ScreenMode.DOOR_OPEN, "", "门已打开", "Door open"),
        (ScreenMode.SETTLING, "", "结算中", "Settling"),
        (ScreenMode.OUT_OF_SERVICE, "lock_fault", "暂停服务", "Out of service"),
    ],
)
def test_state_in_both_languages(
    screen: tuple[CabinetScreen, str], mode: ScreenMode, reason: str, zh: str, en: str
) -> None:
    cabinet_screen, base = screen
    cabinet_screen.publish(ScreenSnapshot(mode, reason=reason))

    chinese = json.loads(_get(base + "/state.json")[1])
    english = json.loads(_get(base + "/state.json?lang=en")[1])

    assert chinese["title"] == zh
    assert english["title"] == en
    assert chinese["show_qr"] is False


def test_out_of_service_reason_is_shown(screen: tuple[CabinetScreen, str]) -> None:
    cabinet_screen, base = screen
    cabinet_screen.publish(ScreenSnapshot(ScreenMode.OUT_OF_SERVICE, reason="disk_full"))

    state = json.loads(_get(base + "/state.json")[1])

    assert state["hint"] == "存储空间不足"


def test_qr_code_encodes_a_valid_purchase_url(screen: tuple[CabinetScreen, str]) -> None:
    cabinet_screen, base = screen

    content_type, svg = _get(base + "/qr.svg")
    url = cabinet_screen.current_url()

    assert content_type == "image/svg+xml"
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg
    assert url.startswith("http://127.0.0.1:9/buy/AH-1?c=")
    assert verify_code(KEY, "AH-1", url.rsplit("=", 1)[1])


def test_unknown_path_is_404(screen: tuple[CabinetScreen, str]) -> None:
    _, base = screen

    with pytest.raises(urllib.error.HTTPError) as caught:
        _get(base + "/admin")

    assert caught.value.code == 404
