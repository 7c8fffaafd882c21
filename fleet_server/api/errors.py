"""Error responses: every error is a JSON ErrorBody with a stable code and a Chinese message.

Services raise ServiceError subclasses. Request validation errors, unknown routes and
database conflicts are translated here too, so clients see one error shape only.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleet_server.schemas.common import ErrorBody, ErrorDetail
from fleet_server.services.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
)

logger = logging.getLogger(__name__)


class AuthenticationError(ServiceError):
    """Raised when the request has no valid bearer token; the API responds with 401."""


STATUS_BY_ERROR: list[tuple[type[ServiceError], int]] = [
    (AuthenticationError, status.HTTP_401_UNAUTHORIZED),
    (PermissionDeniedError, status.HTTP_403_FORBIDDEN),
    (NotFoundError, status.HTTP_404_NOT_FOUND),
    (ConflictError, status.HTTP_409_CONFLICT),
    (InvalidInputError, status.HTTP_422_UNPROCESSABLE_CONTENT),
]

# Chinese wording of pydantic's error types. The braces are filled from the error's ctx.
VALIDATION_MESSAGES = {
    "missing": "缺少必填字段",
    "extra_forbidden": "不允许的字段",
    "int_type": "必须是整数",
    "int_parsing": "必须是整数",
    "int_from_float": "必须是整数，不能有小数",
    "float_type": "必须是数字",
    "float_parsing": "必须是数字",
    "decimal_type": "必须是数字",
    "decimal_parsing": "必须是数字",
    "decimal_max_digits": "数字位数不能超过 {max_digits} 位",
    "decimal_max_places": "小数不能超过 {decimal_places} 位",
    "bool_type": "必须是 true 或 false",
    "bool_parsing": "必须是 true 或 false",
    "string_type": "必须是字符串",
    "string_too_short": "长度不能少于 {min_length} 个字符",
    "string_too_long": "长度不能超过 {max_length} 个字符",
    "string_pattern_mismatch": "格式不正确",
    "string_nul": "不能包含空字符（U+0000）",
    "greater_than": "必须大于 {gt}",
    "greater_than_equal": "必须大于或等于 {ge}",
    "less_than": "必须小于 {lt}",
    "less_than_equal": "必须小于或等于 {le}",
    "enum": "必须是以下值之一：{expected}",
    "literal_error": "必须是以下值之一：{expected}",
    "date_type": "必须是日期（YYYY-MM-DD）",
    "date_parsing": "必须是日期（YYYY-MM-DD）",
    "date_from_datetime_parsing": "必须是日期（YYYY-MM-DD）",
    "datetime_parsing": "必须是带时区的时间（ISO 8601）",
    "list_type": "必须是数组",
    "dict_type": "必须是 JSON 对象",
    "model_type": "必须是 JSON 对象",
    "model_attributes_type": "必须是 JSON 对象",
    "json_invalid": "请求体不是有效的 JSON",
    "value_error": "取值无效",
}
FALLBACK_VALIDATION_MESSAGE = "取值无效"

HTTP_ERRORS: dict[int, tuple[str, str, str]] = {
    status.HTTP_404_NOT_FOUND: ("not_found", "请求的地址不存在", "No route matches the URL"),
    status.HTTP_405_METHOD_NOT_ALLOWED: (
        "method_not_allowed",
        "该地址不支持此请求方法",
        "The URL does not support this HTTP method",
    ),
}


def error_response(
    status_code: int, body: ErrorBody, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status_code, content=body.model_dump(exclude_none=True), headers=headers
    )


def _chinese_validation_message(error: dict[str, Any]) -> str:
    template = VALIDATION_MESSAGES.get(error["type"], FALLBACK_VALIDATION_MESSAGE)
    try:
        return template.format(**error.get("ctx", {}))
    except (KeyError, IndexError):
        return FALLBACK_VALIDATION_MESSAGE


def _field_path(location: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in location) or "body"


def validation_error_body(errors: list[dict[str, Any]]) -> ErrorBody:
    """Build the 422 body: one detail per invalid field, the first one in the summary."""
    details = [
        ErrorDetail(
            field=_field_path(error["loc"]),
            type=error["type"],
            message=_chinese_validation_message(error),
            message_en=error["msg"],
        )
        for error in errors
    ]
    first = details[0] if details else None
    message = "请求数据无效"
    message_en = "Request validation failed"
    if first is not None:
        message += f"：{first.field} {first.message}"
        message_en += f": {first.field}: {first.message_en}"
        if len(details) > 1:
            message += f"（共 {len(details)} 处错误）"
            message_en += f" ({len(details)} errors in total)"
    return ErrorBody(
        code="validation_failed", message=message, message_en=message_en, details=details
    )


def _respond(
    request: Request, status_code: int, body: ErrorBody, headers: dict[str, str] | None = None
) -> Response:
    """Return the JSON error body for an API request, and an error page for a page request.

    The web pages register ``app.state.page_error_renderer``; a request outside the API
    then gets an error page in the reader's language instead of bare JSON.
    """
    renderer = getattr(request.app.state, "page_error_renderer", None)
    if renderer is not None and not request.url.path.startswith("/api/"):
        page: Response = renderer(request, status_code, body.message, body.message_en)
        return page
    return error_response(status_code, body, headers)


async def _handle_service_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ServiceError)
    status_code = status.HTTP_400_BAD_REQUEST
    for error_type, mapped_status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            status_code = mapped_status
            break
    logger.debug(
        "%s %s rejected with %d %s", request.method, request.url.path, status_code, error.code
    )
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, AuthenticationError) else None
    body = ErrorBody(
        code=error.code,
        message=error.message,
        message_en=error.message_en,
        details=_service_error_details(error),
    )
    return _respond(request, status_code, body, headers)


def _service_error_details(error: ServiceError) -> list[ErrorDetail] | None:
    """Return the fields a service error names, so that a form can show each message.

    A service names one field with ``details={"field": ...}`` or many (a file import)
    with ``details={"errors": [{"field", "message", "message_en"}, ...]}``.
    """
    if not error.details:
        return None
    if "errors" in error.details:
        return [
            ErrorDetail(
                field=str(item["field"]),
                type=str(item.get("type", error.code)),
                message=str(item["message"]),
                message_en=str(item["message_en"]),
            )
            for item in error.details["errors"]
        ]
    if "field" in error.details:
        return [
            ErrorDetail(
                field=f"body.{error.details['field']}",
                type=error.code,
                message=error.message,
                message_en=error.message_en,
            )
        ]
    return None


async def _handle_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    body = validation_error_body(list(error.errors()))
    return _respond(request, status.HTTP_422_UNPROCESSABLE_CONTENT, body)


def _is_unparsable_body(error: StarletteHTTPException) -> bool:
    """Return whether FastAPI rejected a JSON body that json.loads could not even start on.

    FastAPI turns a JSONDecodeError into a validation error but responds with 400 to any
    other error of its body reader, such as bytes that are not UTF-8 (UnicodeDecodeError)
    or nesting deeper than the parser's recursion limit (RecursionError).
    """
    return error.status_code == status.HTTP_400_BAD_REQUEST and isinstance(
        error.__cause__, ValueError | RecursionError
    )


async def _handle_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if _is_unparsable_body(error):
        logger.debug(
            "%s %s: request body is not JSON: %r", request.method, request.url.path, error.__cause__
        )
        # RFC 8259 requires UTF-8, so such a body is invalid JSON like any other and gets
        # the same 422 json_invalid that clients already handle.
        body = validation_error_body(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}]
        )
        return _respond(request, status.HTTP_422_UNPROCESSABLE_CONTENT, body)
    code, message, message_en = HTTP_ERRORS.get(
        error.status_code,
        (f"http_{error.status_code}", "请求无法处理", str(error.detail)),
    )
    return _respond(
        request,
        error.status_code,
        ErrorBody(code=code, message=message, message_en=message_en),
        dict(error.headers) if error.headers else None,
    )


async def _handle_integrity_error(request: Request, error: Exception) -> Response:
    # Reached when two requests race past a service's uniqueness check, so the database
    # constraint rejected the second one.
    logger.warning("integrity error on %s %s: %s", request.method, request.url.path, error)
    body = ErrorBody(
        code="conflict",
        message="数据与已有记录冲突，请刷新后重试",
        message_en="The change conflicts with existing data; reload and try again",
    )
    return _respond(request, status.HTTP_409_CONFLICT, body)


async def _handle_out_of_range(request: Request, error: Exception) -> Response:
    # An id or number beyond the database's 64-bit integers (SQLite's driver raises
    # OverflowError, PostgreSQL a DataError): the client sent a value no row can have.
    logger.info("value out of range on %s %s: %s", request.method, request.url.path, error)
    body = ErrorBody(
        code="value_out_of_range",
        message="数值超出允许范围",
        message_en="A number in the request is out of range",
    )
    return _respond(request, status.HTTP_422_UNPROCESSABLE_CONTENT, body)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _handle_service_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_error)
    app.add_exception_handler(IntegrityError, _handle_integrity_error)
    app.add_exception_handler(OverflowError, _handle_out_of_range)
    app.add_exception_handler(DataError, _handle_out_of_range)


def error_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """Return the OpenAPI ``responses`` entry documenting ErrorBody for these statuses."""
    descriptions = {
        400: "Bad request",
        401: "Missing, invalid or expired bearer token",
        403: "The caller's role may not do this",
        404: "Not found, or outside the caller's scope",
        409: "A unique value is already taken",
        422: "Invalid request data",
    }
    return {
        code: {"model": ErrorBody, "description": descriptions.get(code, "Error")}
        for code in status_codes
    }
