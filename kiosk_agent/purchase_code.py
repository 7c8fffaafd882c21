"""The rotating purchase code that the cabinet screen shows in its QR code.

The code is an HMAC-SHA256 of the cabinet id and the current 30-second window,
keyed with the cabinet's own key, so only someone who can see the screen now
can start a purchase there. The fleet server checks it with the same key and
accepts the current and the previous window, which covers a scan made just
before the code changed.
"""

import hashlib
import hmac
import time
from urllib.parse import quote, urlencode

WINDOW_S = 30
# Characters of the hex digest kept: 64 bits, short enough for a small QR code.
CODE_LENGTH = 16
ACCEPTED_WINDOWS = 2


def window_at(unix_time: float) -> int:
    return int(unix_time // WINDOW_S)


def purchase_code(key: bytes, kiosk_id: str, window: int) -> str:
    """Return the code for ``kiosk_id`` in time window ``window``."""
    message = f"zhigui-purchase-code|{kiosk_id}|{window}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:CODE_LENGTH]


def verify_code(key: bytes, kiosk_id: str, code: str, *, now: float | None = None) -> bool:
    """Return True if ``code`` is the code of the current or the previous window."""
    current = window_at(time.time() if now is None else now)
    # compare_digest refuses str with non-ASCII characters; bytes compare in constant time.
    offered = code.encode("utf-8")
    return any(
        hmac.compare_digest(purchase_code(key, kiosk_id, current - age).encode(), offered)
        for age in range(ACCEPTED_WINDOWS)
    )


def purchase_url(base_url: str, kiosk_id: str, code: str) -> str:
    """Return the URL a phone opens from the QR code."""
    return f"{base_url.rstrip('/')}/buy/{quote(kiosk_id)}?{urlencode({'c': code})}"


def seconds_left(now: float) -> float:
    """Return the seconds until the code changes."""
    return WINDOW_S - (now % WINDOW_S)
