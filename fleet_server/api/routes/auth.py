from datetime import UTC, datetime

from fastapi import APIRouter

from fleet_server.api.deps import CurrentUser, SessionDep, SettingsDep
from fleet_server.api.errors import AuthenticationError, error_responses
from fleet_server.core.security import issue_token
from fleet_server.schemas.users import SignInRequest, TokenResponse, UserPublic
from fleet_server.services.users import authenticate

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", responses=error_responses(401, 422))
def sign_in(body: SignInRequest, session: SessionDep, settings: SettingsDep) -> TokenResponse:
    """Sign in with username and password and receive a bearer access token."""
    user = authenticate(session, username=body.username, password=body.password)
    if user is None:
        raise AuthenticationError(
            code="sign_in_failed",
            message="用户名或密码错误",
            message_en="Wrong username or password",
        )
    session.commit()
    now_s = int(datetime.now(UTC).timestamp())
    token = issue_token(
        secret=settings.resolved_secret_key,
        user_id=user.id,
        ttl_s=settings.access_token_ttl_s,
        now_s=now_s,
    )
    return TokenResponse(
        access_token=token,
        expires_at=datetime.fromtimestamp(now_s + settings.access_token_ttl_s, UTC),
    )


@router.get("/me", responses=error_responses(401))
def read_current_user(user: CurrentUser) -> UserPublic:
    """Return the account of the access token."""
    return UserPublic.model_validate(user)
