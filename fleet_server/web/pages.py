"""Pages every visitor shares: sign-in, sign-out, the home redirect, static files."""

from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from fleet_server.api.deps import SessionDep, SettingsDep
from fleet_server.core.security import issue_token
from fleet_server.services.users import authenticate
from fleet_server.web.areas import AREA_ROUTERS
from fleet_server.web.i18n import request_lang
from fleet_server.web.rendering import STATIC_DIR, OptionalUser, install_page_error_handlers, render
from fleet_server.web.session import (
    HOME_BY_ROLE,
    SESSION_COOKIE,
    safe_next,
)

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(user: OptionalUser) -> Response:
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(HOME_BY_ROLE[user.role], status_code=303)


@router.get("/login")
def sign_in_page(request: Request, next: str = "/", expired: str | None = None) -> Response:
    return render(
        request,
        "login.html",
        {
            "next": safe_next(next),
            "username": "",
            "error_key": "sign_in.expired" if expired else None,
        },
    )


@router.post("/login")
def sign_in(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    username = username.strip()
    if not username or not password:
        error_key = "sign_in.required"
        user = None
    else:
        user = authenticate(session, username=username[:64], password=password[:1024])
        error_key = "sign_in.failed"
    if user is None:
        return render(
            request,
            "login.html",
            {"next": safe_next(next), "username": username[:64], "error_key": error_key},
            status_code=401 if error_key == "sign_in.failed" else 422,
        )
    session.commit()
    token = issue_token(
        secret=settings.resolved_secret_key, user_id=user.id, ttl_s=settings.access_token_ttl_s
    )
    target = safe_next(next)
    response = RedirectResponse(
        target if target != "/" else HOME_BY_ROLE[user.role], status_code=303
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.access_token_ttl_s,
        httponly=True,
        samesite="lax",
        secure=settings.public_url.startswith("https://"),
    )
    return response


@router.post("/logout")
def sign_out(request: Request) -> Response:
    # Signing out only deletes this browser's cookie, which is harmless on any request.
    # So it needs no CSRF check and works from a page older than the cookie.
    response = RedirectResponse(f"/login?lang={request_lang(request)}", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def install_pages(app: FastAPI) -> None:
    """Mount the pages, their static files and their error handlers on the app."""
    install_page_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
    for area_router in AREA_ROUTERS:
        app.include_router(area_router)
