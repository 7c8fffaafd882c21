"""User accounts: creation, password sign-in and the lookup behind every bearer token."""

import logging
from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.core.security import hash_password, password_needs_rehash, verify_password
from fleet_server.models import Operator, Role, School, User
from fleet_server.models.base import utc_now
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit
from fleet_server.services.errors import ConflictError, InvalidInputError, NotFoundError

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 10


@cache
def _dummy_password_hash() -> str:
    """Return a hash to verify against when the username is unknown.

    A failed sign-in then takes as long whether or not the account exists.
    """
    return hash_password("zhigui-dummy-password-for-timing")


def create_user(
    session: Session,
    *,
    actor: Actor,
    username: str,
    password: str,
    display_name: str,
    role: Role,
    school_id: int | None = None,
    operator_id: int | None = None,
) -> User:
    """Create an active account after checking that the role and its binding fit together.

    A school_admin needs a school. An operator account needs an operator, and no other
    role may have one. A province_admin has no school, and a student may name one.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInputError(
            code="password_too_short",
            message=f"密码至少需要 {MIN_PASSWORD_LENGTH} 个字符",
            message_en=f"Password must have at least {MIN_PASSWORD_LENGTH} characters",
        )
    _check_role_binding(session, role=role, school_id=school_id, operator_id=operator_id)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ConflictError("user", "username", username)

    user = User(
        username=username,
        display_name=display_name,
        password_hash=hash_password(password),
        role=role,
        school_id=school_id,
        operator_id=operator_id,
        is_active=True,
    )
    session.add(user)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="user.create",
        object_type="user",
        object_id=user.id,
        after={
            "username": username,
            "role": role,
            "school_id": school_id,
            "operator_id": operator_id,
        },
    )
    return user


def _check_role_binding(
    session: Session, *, role: Role, school_id: int | None, operator_id: int | None
) -> None:
    def reject(message: str, message_en: str) -> InvalidInputError:
        return InvalidInputError(
            code="role_binding_invalid", message=message, message_en=message_en
        )

    if role is Role.SCHOOL_ADMIN and school_id is None:
        raise reject("学校管理员必须指定所属学校", "A school_admin account needs a school_id")
    if role is Role.OPERATOR and operator_id is None:
        raise reject("运营企业账号必须指定所属企业", "An operator account needs an operator_id")
    if role is not Role.OPERATOR and operator_id is not None:
        raise reject(
            "只有运营企业账号可以指定所属企业", "Only operator accounts may have an operator_id"
        )
    if role is Role.PROVINCE_ADMIN and school_id is not None:
        raise reject("省级管理员不属于任何学校", "A province_admin account has no school_id")
    if school_id is not None and session.get(School, school_id) is None:
        raise NotFoundError("school", school_id)
    if operator_id is not None and session.get(Operator, operator_id) is None:
        raise NotFoundError("operator", operator_id)


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    """Return the active user whose password matches, or None.

    On success the sign-in time is stored, and the hash is upgraded when it was made
    with weaker parameters than the current ones.
    """
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        verify_password(_dummy_password_hash(), password)
        logger.info("sign-in failed for unknown username %r", username)
        return None
    if not verify_password(user.password_hash, password):
        logger.info("sign-in failed for user %d: wrong password", user.id)
        return None
    if not user.is_active:
        logger.info("sign-in failed for user %d: account disabled", user.id)
        return None
    if password_needs_rehash(user.password_hash):
        logger.info("upgrading the password hash of user %d", user.id)
        user.password_hash = hash_password(password)
    user.last_sign_in_at = utc_now()
    return user


def get_active_user(session: Session, *, user_id: int) -> User | None:
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        return None
    return user
