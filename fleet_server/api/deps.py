"""Request dependencies: settings, database session, the signed-in user and role checks.

Handlers declare what they need with the Annotated aliases below (SessionDep,
CurrentUser, CurrentActor, ...). Role checks are written once, in require_role. Object
scope (which schools, operators and cabinets a caller may see) is decided in
fleet_server.services.access.
"""

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.api.errors import AuthenticationError
from fleet_server.core.config import ServerSettings
from fleet_server.core.security import TokenExpiredError, TokenInvalidError, verify_token
from fleet_server.models import Role, User
from fleet_server.services.access import Actor
from fleet_server.services.errors import PermissionDeniedError
from fleet_server.services.pagination import MAX_PAGE_LIMIT
from fleet_server.services.users import get_active_user
from fleet_server.web.session import CSRF_HEADER, SESSION_COOKIE, csrf_matches

ROLE_NAMES = {
    Role.STUDENT: "学生",
    Role.OPERATOR: "运营企业",
    Role.SCHOOL_ADMIN: "学校管理员",
    Role.PROVINCE_ADMIN: "省级专班",
}

_bearer = HTTPBearer(auto_error=False, description="access token from POST /api/v1/auth/token")


def get_settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """Yield a session for one request. Handlers commit their changes explicitly.

    Anything not committed when the handler returns or raises is rolled back.
    """
    factory: sessionmaker[Session] = request.app.state.session_factory
    with factory() as session:
        yield session


SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _cookie_token(request: Request, settings: ServerSettings) -> str | None:
    """Return the web pages' session token when the request may use it, else None.

    Page scripts call the API with the session cookie. A request that changes something
    must also carry the page's CSRF token, so that another site cannot make the browser
    send one with the cookie attached.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    if request.method in SAFE_METHODS:
        return token
    if csrf_matches(token, settings.resolved_secret_key, request.headers.get(CSRF_HEADER)):
        return token
    raise AuthenticationError(
        code="csrf_token_invalid",
        message="页面已过期，请刷新后重试",
        message_en=f"Send the page's CSRF token in {CSRF_HEADER}, or a bearer token",
    )


def get_current_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    token = credentials.credentials if credentials is not None else None
    if token is None:
        token = _cookie_token(request, settings)
    if token is None:
        raise AuthenticationError(
            code="not_authenticated",
            message="请先登录",
            message_en="Sign in first: send Authorization: Bearer <access token>",
        )
    try:
        claims = verify_token(token, secret=settings.resolved_secret_key)
    except TokenExpiredError as error:
        raise AuthenticationError(
            code="token_expired",
            message="登录已过期，请重新登录",
            message_en="The access token has expired; sign in again",
        ) from error
    except TokenInvalidError as error:
        raise AuthenticationError(
            code="token_invalid",
            message="登录凭证无效，请重新登录",
            message_en="The access token is invalid; sign in again",
        ) from error
    user = get_active_user(session, user_id=claims.user_id)
    if user is None:
        raise AuthenticationError(
            code="token_invalid",
            message="登录凭证无效，请重新登录",
            message_en="The account of this access token no longer exists or is disabled",
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_current_actor(user: CurrentUser) -> Actor:
    return Actor.for_user(user)


CurrentActor = Annotated[Actor, Depends(get_current_actor)]


def require_role(*roles: Role) -> Callable[[CurrentActor], Actor]:
    """Return a dependency that passes the Actor on when its role is one of ``roles``.

    Other roles get 403 permission_denied. The check concerns the kind of action only,
    because the services decide which objects the caller may touch.
    """
    allowed = frozenset(roles)
    names = "、".join(ROLE_NAMES[role] for role in roles)
    names_en = ", ".join(role.value for role in roles)

    def check_role(actor: CurrentActor) -> Actor:
        if actor.role not in allowed:
            raise PermissionDeniedError(
                message=f"没有权限：此操作仅限{names}",
                message_en=f"Permission denied: this action is for {names_en} only",
            )
        return actor

    return check_role


StaffActor = Annotated[
    Actor, Depends(require_role(Role.OPERATOR, Role.SCHOOL_ADMIN, Role.PROVINCE_ADMIN))
]
SchoolManagerActor = Annotated[Actor, Depends(require_role(Role.SCHOOL_ADMIN, Role.PROVINCE_ADMIN))]
CabinetRegistrarActor = Annotated[Actor, Depends(require_role(Role.OPERATOR, Role.PROVINCE_ADMIN))]
ProvinceAdminActor = Annotated[Actor, Depends(require_role(Role.PROVINCE_ADMIN))]

PageLimit = Annotated[
    int, Query(ge=1, le=MAX_PAGE_LIMIT, description="maximum number of items to return")
]
PageOffset = Annotated[int, Query(ge=0, description="number of items to skip")]
