"""Password hashing, access tokens and sign-in."""

import base64
import hashlib
import hmac
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.db import session_scope
from fleet_server.core.security import (
    TOKEN_KEY_LABEL,
    TokenExpiredError,
    TokenInvalidError,
    hash_password,
    issue_token,
    password_needs_rehash,
    verify_password,
    verify_token,
)
from fleet_server.models import Role, User
from fleet_server.services.access import Actor
from fleet_server.services.audit import list_audit_entries
from fleet_server.services.errors import InvalidInputError, ServiceError
from fleet_server.services.users import authenticate, create_user
from server_helpers import TEST_PASSWORD, TEST_SECRET_KEY, TOKEN_TTL_S, World

pytest_plugins = ["server_fixtures"]

SECRET = TEST_SECRET_KEY.encode()
NOW_S = 1_750_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- Password hashing -----------------------------------------------------------------------


def test_password_hash_is_salted_argon2id() -> None:
    first = hash_password("校园卡密码 2024")
    second = hash_password("校园卡密码 2024")

    assert first.startswith("$argon2id$")
    assert first != second
    assert "校园卡密码" not in first
    assert verify_password(first, "校园卡密码 2024")
    assert verify_password(second, "校园卡密码 2024")
    assert not password_needs_rehash(first)


def test_wrong_password_does_not_verify() -> None:
    password_hash = hash_password("right password")

    assert not verify_password(password_hash, "wrong password")
    assert not verify_password(password_hash, "")
    assert not verify_password("not-a-hash", "right password")


def test_create_user_stores_hash_only(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        user = create_user(
            session,
            actor=Actor.system("test"),
            username="province-1",
            password="a long enough password",
            display_name="省专班",
            role=Role.PROVINCE_ADMIN,
        )
        user_id = user.id

    with session_factory() as session:
        stored = session.get(User, user_id)
        assert stored is not None
        assert stored.password_hash.startswith("$argon2id$")
        assert "a long enough password" not in stored.password_hash
        audit = list_audit_entries(session, object_type="user", object_id=user_id)
        assert [entry.action for entry in audit] == ["user.create"]
        assert audit[0].actor_label == "system:test"
        assert audit[0].after is not None
        assert "password" not in json.dumps(audit[0].after)


@pytest.mark.parametrize(
    ("role", "school_id", "operator_id", "code"),
    [
        pytest.param(Role.SCHOOL_ADMIN, None, None, "role_binding_invalid", id="admin-no-school"),
        pytest.param(Role.OPERATOR, None, None, "role_binding_invalid", id="operator-no-company"),
        pytest.param(Role.STUDENT, None, 1, "role_binding_invalid", id="student-with-company"),
        pytest.param(Role.SCHOOL_ADMIN, 999_999, None, "school_not_found", id="unknown-school"),
    ],
)
def test_create_user_rejects_bad_binding(
    session_factory: sessionmaker[Session],
    role: Role,
    school_id: int | None,
    operator_id: int | None,
    code: str,
) -> None:
    with session_factory() as session, pytest.raises(ServiceError) as error:
        create_user(
            session,
            actor=Actor.system("test"),
            username="someone",
            password="a long enough password",
            display_name="someone",
            role=role,
            school_id=school_id,
            operator_id=operator_id,
        )

    assert error.value.code == code


def test_create_user_rejects_short_password(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session, pytest.raises(InvalidInputError) as error:
        create_user(
            session,
            actor=Actor.system("test"),
            username="short",
            password="123456",
            display_name="short",
            role=Role.PROVINCE_ADMIN,
        )

    assert error.value.code == "password_too_short"


def test_authenticate_checks_password(world: World, seeded: sessionmaker[Session]) -> None:
    with session_scope(seeded) as session:
        good = authenticate(session, username="province", password=TEST_PASSWORD)
        bad = authenticate(session, username="province", password=TEST_PASSWORD + "x")
        unknown = authenticate(session, username="nobody", password=TEST_PASSWORD)

        assert good is not None
        assert good.id == world.province_admin_id
        assert good.last_sign_in_at is not None
        assert bad is None
        assert unknown is None


# --- Tokens ---------------------------------------------------------------------------------


def test_token_round_trip() -> None:
    token = issue_token(secret=SECRET, user_id=42, ttl_s=600, now_s=NOW_S)

    claims = verify_token(token, secret=SECRET, now_s=NOW_S + 599)

    assert claims.user_id == 42
    assert claims.issued_at_s == NOW_S
    assert claims.expires_at_s == NOW_S + 600


def test_token_expires_at_ttl() -> None:
    token = issue_token(secret=SECRET, user_id=42, ttl_s=600, now_s=NOW_S)

    with pytest.raises(TokenExpiredError):
        verify_token(token, secret=SECRET, now_s=NOW_S + 600)


def test_token_other_secret_rejected() -> None:
    token = issue_token(secret=SECRET, user_id=42, ttl_s=600, now_s=NOW_S)

    with pytest.raises(TokenInvalidError):
        verify_token(token, secret=b"another-secret-key-of-sufficient-length", now_s=NOW_S)


def test_token_tampered_payload_rejected() -> None:
    token = issue_token(secret=SECRET, user_id=42, ttl_s=600, now_s=NOW_S)
    version, _, signature = token.split(".")
    forged_claims = {"sub": 1, "iat": NOW_S, "exp": NOW_S + 600}
    forged_payload = b64(json.dumps(forged_claims, separators=(",", ":")).encode())

    with pytest.raises(TokenInvalidError):
        verify_token(f"{version}.{forged_payload}.{signature}", secret=SECRET, now_s=NOW_S)


def test_token_extended_expiry_rejected() -> None:
    token = issue_token(secret=SECRET, user_id=42, ttl_s=600, now_s=NOW_S)
    version, _, signature = token.split(".")
    extended = {"sub": 42, "iat": NOW_S, "exp": NOW_S + 10**9}
    payload = b64(json.dumps(extended, separators=(",", ":")).encode())

    with pytest.raises(TokenInvalidError):
        verify_token(f"{version}.{payload}.{signature}", secret=SECRET, now_s=NOW_S + 601)


@pytest.mark.parametrize(
    "token",
    ["", "v1", "v1.abc", "v2.e30.AAAA", "v1.e30.", "v1..sig", "v1.e30.AAAA.extra", "v1.%%.AAAA"],
)
def test_malformed_token_rejected(token: str) -> None:
    with pytest.raises(TokenInvalidError):
        verify_token(token, secret=SECRET, now_s=NOW_S)


def test_signed_bad_claims_rejected() -> None:
    # Correctly signed, but "sub" is a string: a token from a buggy or foreign issuer.
    payload = b64(json.dumps({"sub": "42", "iat": NOW_S, "exp": NOW_S + 60}).encode())
    signed_part = f"v1.{payload}"
    key = hmac.new(SECRET, TOKEN_KEY_LABEL, hashlib.sha256).digest()
    signature = b64(hmac.new(key, signed_part.encode(), hashlib.sha256).digest())

    with pytest.raises(TokenInvalidError):
        verify_token(f"{signed_part}.{signature}", secret=SECRET, now_s=NOW_S)


# --- Over the API ---------------------------------------------------------------------------


def test_sign_in_returns_working_token(client: TestClient, world: World) -> None:
    response = client.post(
        "/api/v1/auth/token", json={"username": "admin-ahu", "password": TEST_PASSWORD}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["username"] == "admin-ahu"
    assert me.json()["role"] == "school_admin"
    assert me.json()["school_id"] == world.a.school_id
    assert "password_hash" not in me.json()


def test_sign_in_wrong_password_401(client: TestClient, world: World) -> None:
    wrong = client.post("/api/v1/auth/token", json={"username": "admin-ahu", "password": "nope"})
    unknown = client.post("/api/v1/auth/token", json={"username": "ghost", "password": "nope"})

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "sign_in_failed"
    assert wrong.json()["message"] == "用户名或密码错误"


def test_expired_token_401(client: TestClient, world: World) -> None:
    token = issue_token(
        secret=SECRET, user_id=world.province_admin_id, ttl_s=TOKEN_TTL_S, now_s=NOW_S
    )

    response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"
    assert response.json()["message"] == "登录已过期，请重新登录"


def test_tampered_token_401(client: TestClient, world: World) -> None:
    token = issue_token(secret=SECRET, user_id=world.student_id, ttl_s=TOKEN_TTL_S)
    version, _, signature = token.split(".")
    claims = {"sub": world.province_admin_id, "iat": NOW_S, "exp": 2**40}
    forged = f"{version}.{b64(json.dumps(claims).encode())}.{signature}"

    response = client.get("/api/v1/schools", headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401
    assert response.json()["code"] == "token_invalid"


def test_disabled_user_token_401(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    with session_scope(seeded) as session:
        user = session.get(User, world.a.admin_id)
        assert user is not None
        user.is_active = False

    response = client.get("/api/v1/auth/me", headers=world.headers["school_admin_a"])

    assert response.status_code == 401
    assert response.json()["code"] == "token_invalid"
