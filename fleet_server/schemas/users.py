"""Bodies for sign-in and user accounts."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from fleet_server.models import Role
from fleet_server.schemas.common import RequestModel


class SignInRequest(RequestModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role
    school_id: int | None
    operator_id: int | None
    is_active: bool
    created_at: datetime
