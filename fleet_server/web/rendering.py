"""Templates, the signed-in user of a page, and the error pages."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from fleet_server.api.deps import SessionDep, SettingsDep
from fleet_server.models import Role
from fleet_server.web.i18n import Translator, remember_lang, request_lang
from fleet_server.web.session import (
    CSRF_FIELD,
    PageForbiddenError,
    PageUser,
    SignInRequiredError,
    next_path,
    session_user,
    sign_in_url,
)

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def fen_to_yuan(fen: int) -> str:
    """Return an amount in fen as yuan with two decimals, exactly."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"


environment.filters["yuan"] = fen_to_yuan


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    user: PageUser | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = request_lang(request)
    values = {
        "request": request,
        "t": Translator(lang),
        "lang": lang,
        "user": user,
        "csrf_field": CSRF_FIELD,
        "csrf": user.csrf if user else "",
        "path": request.url.path,
        "query": request.url.query,
        "lang_switch_url": _lang_switch_url(request, "en" if lang == "zh" else "zh"),
        **(context or {}),
    }
    body = environment.get_template(template).render(values)
    response = HTMLResponse(body, status_code=status_code)
    remember_lang(request, response)
    return response


def _lang_switch_url(request: Request, lang: str) -> str:
    """Return this page's URL in the other language, keeping its other query parameters."""
    params = [(key, value) for key, value in request.query_params.multi_items() if key != "lang"]
    return f"{request.url.path}?{urlencode([*params, ('lang', lang)])}"


def page_user(*roles: Role) -> Callable[..., PageUser]:
    """Return a dependency that yields the signed-in user whose role is one of ``roles``."""
    allowed = frozenset(roles)

    def dependency(request: Request, session: SessionDep, settings: SettingsDep) -> PageUser:
        user = session_user(request, session, settings)
        if user is None:
            raise SignInRequiredError(next_path(request))
        if allowed and user.role not in allowed:
            raise PageForbiddenError()
        return user

    return dependency


def optional_user(request: Request, session: SessionDep, settings: SettingsDep) -> PageUser | None:
    try:
        return session_user(request, session, settings)
    except SignInRequiredError:
        return None


OptionalUser = Annotated[PageUser | None, Depends(optional_user)]


def install_page_error_handlers(app: FastAPI) -> None:
    async def sign_in_required(request: Request, error: Exception) -> Response:
        assert isinstance(error, SignInRequiredError)
        return RedirectResponse(sign_in_url(error.next_url, error.expired), status_code=303)

    async def forbidden(request: Request, error: Exception) -> Response:
        return render(request, "error.html", {"message_key": "error.forbidden"}, status_code=403)

    def error_page(request: Request, status_code: int, message: str, message_en: str) -> Response:
        text = message if request_lang(request) == "zh" else message_en
        if status_code == 404:
            return render(
                request, "error.html", {"message_key": "error.not_found"}, status_code=404
            )
        return render(
            request, "error.html", {"message_key": None, "message": text}, status_code=status_code
        )

    app.add_exception_handler(SignInRequiredError, sign_in_required)
    app.add_exception_handler(PageForbiddenError, forbidden)
    app.state.page_error_renderer = error_page
