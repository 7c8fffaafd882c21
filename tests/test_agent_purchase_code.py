"""The rotating purchase code: windows, verification and the QR URL."""

from kiosk_agent.purchase_code import (
    WINDOW_S,
    purchase_code,
    purchase_url,
    verify_code,
    window_at,
)

KEY = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
NOW = 1_796_371_200.0  # a window boundary


def test_code_is_accepted_in_its_window_and_the_next() -> None:
    code = purchase_code(KEY, "AH-1", window_at(NOW))

    assert verify_code(KEY, "AH-1", code, now=NOW)
    assert verify_code(KEY, "AH-1", code, now=NOW + WINDOW_S + 1)
    assert not verify_code(KEY, "AH-1", code, now=NOW + 2 * WINDOW_S)


def test_code_of_the_future_is_rejected() -> None:
    future = purchase_code(KEY, "AH-1", window_at(NOW) + 1)

    assert not verify_code(KEY, "AH-1", future, now=NOW)


def test_code_is_bound_to_cabinet_and_key() -> None:
    code = purchase_code(KEY, "AH-1", window_at(NOW))

    assert not verify_code(KEY, "AH-2", code, now=NOW)
    assert not verify_code(bytes(32), "AH-1", code, now=NOW)


def test_codes_change_every_window() -> None:
    codes = {purchase_code(KEY, "AH-1", window_at(NOW) + i) for i in range(100)}

    assert len(codes) == 100
    assert all(len(code) == 16 for code in codes)


def test_url_carries_cabinet_and_code() -> None:
    url = purchase_url("https://zhigui.example.edu/", "AH-10357-0001", "0123abcd0123abcd")

    assert url == "https://zhigui.example.edu/buy/AH-10357-0001?c=0123abcd0123abcd"


def test_code_with_non_ascii_characters_is_refused() -> None:
    key = bytes(range(32))

    assert verify_code(key, "AH-10357-0001", "码码码码", now=1_000_000.0) is False
