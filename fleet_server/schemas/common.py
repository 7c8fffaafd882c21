"""Types shared by the request and response bodies: errors, pages, coordinates, partial updates."""

from decimal import Decimal
from typing import Annotated, Any, ClassVar, Generic, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

MICRODEGREES_PER_DEGREE = 1_000_000

ItemT = TypeVar("ItemT")

# Degrees with at most six decimals (about 0.1 m), written to JSON as a number. The value
# is stored as integer micro-degrees, so it round-trips exactly.
Latitude = Annotated[
    Decimal,
    Field(ge=-90, le=90, max_digits=8, decimal_places=6, examples=[31.842136]),
    PlainSerializer(float, return_type=float, when_used="json"),
]
Longitude = Annotated[
    Decimal,
    Field(ge=-180, le=180, max_digits=9, decimal_places=6, examples=[117.289467]),
    PlainSerializer(float, return_type=float, when_used="json"),
]
NUL_ERROR_TYPE = "string_nul"
NUL_ERROR_MESSAGE = "Text must not contain the NUL character U+0000; remove it"


def reject_nul(value: str) -> str:
    """Raise a validation error when ``value`` contains U+0000.

    PostgreSQL text columns cannot store that character, and SQLite would store it, so the
    API rejects it on both backends before a query is built.
    """
    if "\x00" in value:
        raise PydanticCustomError(NUL_ERROR_TYPE, NUL_ERROR_MESSAGE)
    return value


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set | frozenset):
        return any(_contains_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_contains_nul(key) or _contains_nul(item) for key, item in value.items())
    return False


# Text in a path or query parameter. Request bodies get the same check from RequestModel.
Text = Annotated[str, AfterValidator(reject_nul)]
# GB/T 2260 county-level division code, current or former.
# [0-9], not \d, which would also take full-width digits that no code lookup finds.
DivisionCodeStr = Annotated[str, Field(pattern=r"^[0-9]{6}$", examples=["340422"])]
NameStr = Annotated[str, Field(min_length=1, max_length=200)]
# Largest value of an Integer column on PostgreSQL (int4). SQLite would store more, so the
# bound keeps both backends accepting the same values.
MAX_INT32 = 2**31 - 1
# A count of people, beds or seats. Strict, so 12.5 or "12" is rejected instead of coerced.
Count = Annotated[int, Field(strict=True, ge=0, le=MAX_INT32)]


def to_microdegrees(degrees: Decimal | None) -> int | None:
    if degrees is None:
        return None
    return int(degrees * MICRODEGREES_PER_DEGREE)


def from_microdegrees(microdegrees: int | None) -> Decimal | None:
    if microdegrees is None:
        return None
    return Decimal(microdegrees) / MICRODEGREES_PER_DEGREE


class ErrorDetail(BaseModel):
    """One invalid field of a rejected request."""

    field: str = Field(description="location of the field, e.g. body.price_fen")
    type: str = Field(description="pydantic error type, e.g. missing, int_type")
    message: str
    message_en: str


class ErrorBody(BaseModel):
    """Body of every error response."""

    code: str = Field(description="stable machine-readable error code", examples=["not_found"])
    message: str = Field(description="message for the user, Simplified Chinese")
    message_en: str = Field(description="the same message in English")
    details: list[ErrorDetail] | None = None


class Page(BaseModel, Generic[ItemT]):
    """One page of a list, with the total number of matching items."""

    items: list[ItemT]
    total: int
    limit: int
    offset: int


class RequestModel(BaseModel):
    """Base of the request bodies: unknown fields and text containing U+0000 are rejected."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _reject_nul(cls, value: Any) -> Any:
        if _contains_nul(value):
            raise PydanticCustomError(NUL_ERROR_TYPE, NUL_ERROR_MESSAGE)
        return value


class UpdateModel(RequestModel):
    """Base of the PATCH bodies: omitted fields stay unchanged, null clears a nullable field.

    Fields named in NOT_NULLABLE may be omitted but not set to null.
    """

    NOT_NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _reject_null_for_required(self) -> Self:
        for name in sorted(self.NOT_NULLABLE & self.model_fields_set):
            if getattr(self, name) is None:
                raise ValueError(f"{name} may be omitted but not set to null")
        return self

    def changes(self) -> dict[str, Any]:
        """Return the fields the request sets, by name."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class CoordinatesMixin(BaseModel):
    latitude: Latitude | None = None
    longitude: Longitude | None = None

    @model_validator(mode="after")
    def _check_coordinates_paired(self) -> Self:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude must be given together")
        return self
