"""Sign-in for the pages: a session cookie holding the same signed token as the API.

The cookie is HttpOnly and SameSite=Lax. Every form that changes something carries a CSRF
token derived from the session token, and page scripts send it in the X-CSRF-Token header,
so another site cannot make a signed-in browser submit a form or call the API.
"""

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from sqlalchemy.orm import Session

from fleet_server.core.config import ServerSettings
from fleet_server.core.security import TokenExpiredError, TokenInvalidError, verify_token
from fleet_server.models import Role, User
from fleet_server.services.users import get_active_user

SESSION_COOKIE = "zhigui_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class PageUser:
    user: User
    token: str
    csrf: str

    @property
    def role(self) -> Role:
        return self.user.role


class SignInRequiredError(Exception):
    """The page needs a signed-in user; the handler redirects to the sign-in page."""

    def __init__(self, next_url: str, expired: bool = False) -> None:
        super().__init__(next_url)
        self.next_url = next_url
        self.expired = expired


class PageForbiddenError(Exception):
    """The signed-in user's role may not open the page."""


def csrf_for(token: str, secret: bytes) -> str:
    return hmac.new(secret, b"csrf|" + token.encode(), hashlib.sha256).hexdigest()[:32]


def csrf_matches(token: str, secret: bytes, offered: str | None) -> bool:
    # Bytes, because compare_digest refuses str with non-ASCII characters.
    return offered is not None and hmac.compare_digest(
        csrf_for(token, secret).encode(), offered.encode("utf-8", "replace")
    )


def session_user(request: Request, session: Session, settings: ServerSettings) -> PageUser | None:
    """Return the signed-in user of the request's cookie, or None.

    Raises SignInRequiredError(expired=True) for a cookie whose token has expired, so the
    sign-in page can show the reason.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        claims = verify_token(token, secret=settings.resolved_secret_key)
    except TokenExpiredError as error:
        raise SignInRequiredError(next_path(request), expired=True) from error
    except TokenInvalidError:
        return None
    user = get_active_user(session, user_id=claims.user_id)
    if user is None:
        return None
    return PageUser(user=user, token=token, csrf=csrf_for(token, settings.resolved_secret_key))


def next_path(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


def sign_in_url(next_url: str, expired: bool = False) -> str:
    url = f"/login?next={quote(next_url, safe='')}"
    return f"{url}&expired=1" if expired else url


def safe_next(next_url: str | None) -> str:
    """Return a local path to go to after signing in; anything else becomes "/"."""
    if not next_url or not next_url.startswith("/") or next_url.startswith("//"):
        return "/"
    if "\\" in next_url or any(ord(char) < 32 for char in next_url):
        return "/"
    return next_url


HOME_BY_ROLE = {
    Role.STUDENT: "/me",
    Role.OPERATOR: "/operator",
    Role.SCHOOL_ADMIN: "/school",
    Role.PROVINCE_ADMIN: "/province",
}
