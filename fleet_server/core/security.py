"""Password hashing (argon2id) and signed, expiring bearer tokens (HMAC-SHA256).

Token layout, all parts base64url without padding, joined by dots::

    v1 . payload . signature

    payload    JSON {"sub": <user id>, "iat": <issued, Unix s>, "exp": <expires, Unix s>}
    signature  HMAC-SHA256(token_key, "v1." + payload)

``token_key`` is derived from the server secret with HMAC and a fixed label, so the same
secret can later sign other things (QR codes, unlock commands) without one signature
being accepted in place of another. A token carries no role: the server loads the user
on every request, so a role change or a deactivation takes effect at once.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_VERSION = "v1"
TOKEN_KEY_LABEL = b"zhigui access token v1"

# argon2-cffi's defaults, which are RFC 9106's low-memory profile (argon2-cffi 25.1 checked):
# time cost 3, memory 64 MiB, parallelism 4.
_password_hasher = PasswordHasher()


class TokenError(Exception):
    """Raised when a bearer token cannot be accepted."""


class TokenInvalidError(TokenError):
    """The token is malformed or its signature does not match."""


class TokenExpiredError(TokenError):
    """The token's signature is valid but its expiry time has passed."""


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    issued_at_s: int
    expires_at_s: int


def hash_password(password: str) -> str:
    """Return an argon2id hash in PHC string format, with a random salt."""
    return _password_hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Return whether ``password`` matches ``password_hash``. A malformed hash never matches."""
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    """Return whether the hash was made with parameters weaker than the current ones."""
    try:
        return _password_hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise TokenInvalidError("token part is not base64url") from error


def _token_key(secret: bytes) -> bytes:
    return hmac.new(secret, TOKEN_KEY_LABEL, hashlib.sha256).digest()


def _sign(secret: bytes, signed_part: str) -> str:
    digest = hmac.new(_token_key(secret), signed_part.encode("ascii"), hashlib.sha256).digest()
    return _b64encode(digest)


def issue_token(*, secret: bytes, user_id: int, ttl_s: int, now_s: float | None = None) -> str:
    """Return a token for ``user_id`` that expires ``ttl_s`` seconds after ``now_s``."""
    issued_at = int(time.time() if now_s is None else now_s)
    claims = {"sub": user_id, "iat": issued_at, "exp": issued_at + ttl_s}
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signed_part = f"{TOKEN_VERSION}.{payload}"
    return f"{signed_part}.{_sign(secret, signed_part)}"


def verify_token(token: str, *, secret: bytes, now_s: float | None = None) -> TokenClaims:
    """Check the token's signature and expiry and return its claims.

    Raises TokenInvalidError for a malformed or forged token and TokenExpiredError for a
    genuine token at or past its expiry time. The signature is checked first, so an
    expired forgery is reported as invalid.
    """
    if not token.isascii():
        raise TokenInvalidError("token contains characters outside ASCII")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        raise TokenInvalidError("token does not have the form v1.PAYLOAD.SIGNATURE")
    version, payload, signature = parts
    expected = _sign(secret, f"{version}.{payload}")
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
        raise TokenInvalidError("token signature does not match")

    try:
        claims = json.loads(_b64decode(payload))
        user_id, issued_at, expires_at = claims["sub"], claims["iat"], claims["exp"]
    except (ValueError, KeyError, TypeError) as error:
        raise TokenInvalidError("token payload is not valid JSON claims") from error
    if not all(type(value) is int for value in (user_id, issued_at, expires_at)):
        raise TokenInvalidError("token claims sub, iat and exp must be integers")

    now = time.time() if now_s is None else now_s
    if now >= expires_at:
        raise TokenExpiredError(f"token expired at Unix time {expires_at}")
    return TokenClaims(user_id=user_id, issued_at_s=issued_at, expires_at_s=expires_at)
