"""Helpers for the fleet-server tests: test users, bearer tokens and the World layout.

Test modules import from here; the fixtures live in server_fixtures.
"""

from dataclasses import dataclass, field
from functools import cache

from sqlalchemy.orm import Session

from fleet_server.core.security import hash_password, issue_token
from fleet_server.models import Role, User

TEST_SECRET_KEY = "test-secret-key-for-zhigui-fleet-server-0123456789"
TEST_PASSWORD = "correct horse battery staple"
TOKEN_TTL_S = 3600


@cache
def cached_password_hash() -> str:
    """Return one argon2 hash of TEST_PASSWORD, computed once per session to save time."""
    return hash_password(TEST_PASSWORD)


def token_for(user_id: int) -> str:
    return issue_token(secret=TEST_SECRET_KEY.encode(), user_id=user_id, ttl_s=TOKEN_TTL_S)


def bearer(user_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user_id)}"}


def add_user(
    session: Session,
    username: str,
    role: Role,
    *,
    school_id: int | None = None,
    operator_id: int | None = None,
) -> User:
    user = User(
        username=username,
        display_name=username,
        password_hash=cached_password_hash(),
        role=role,
        school_id=school_id,
        operator_id=operator_id,
        is_active=True,
    )
    session.add(user)
    session.flush()
    return user


@dataclass
class SchoolSite:
    """A school with one building, one placement and one cabinet, and its administrator."""

    school_id: int
    building_id: int
    placement_id: int
    kiosk_id: str
    admin_id: int


@dataclass
class World:
    """Two schools, each with a cabinet run by its own operator, and one user per role.

    School A (安徽大学) has cabinet AH-10357-0001 run by operator A; school B (合肥工业大学)
    has AH-10359-0001 run by operator B.
    """

    a: SchoolSite
    b: SchoolSite
    operator_a_id: int
    operator_b_id: int
    operator_a_user_id: int
    operator_b_user_id: int
    province_admin_id: int
    student_id: int
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
