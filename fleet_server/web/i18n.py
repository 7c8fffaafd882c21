"""Page language: Simplified Chinese by default, English on request.

``?lang=en`` or ``?lang=zh`` on any page switches the language and remembers it in a
cookie. Templates call ``t("key")``; a key missing from the catalog is a programming error
and raises, so an untranslated text cannot reach a page unnoticed.
"""

from collections.abc import Iterable
from types import ModuleType
from typing import Literal

from fastapi import Request, Response

from fleet_server.web.messages import common

Lang = Literal["zh", "en"]
LANG_COOKIE = "zhigui_lang"
LANG_COOKIE_MAX_AGE_S = 365 * 24 * 3600


def merge_catalogs(modules: Iterable[ModuleType]) -> dict[str, tuple[str, str]]:
    """Merge the areas' MESSAGES, refusing a key defined twice."""
    catalog: dict[str, tuple[str, str]] = {}
    for module in modules:
        for key, texts in module.MESSAGES.items():
            if key in catalog:
                raise ValueError(
                    f"message key {key!r} is defined twice (again in {module.__name__})"
                )
            catalog[key] = texts
    return catalog


CATALOG: dict[str, tuple[str, str]] = merge_catalogs([common])


def register(module: ModuleType) -> None:
    """Add an area's MESSAGES to the catalog; each page module calls this on import."""
    for key, texts in module.MESSAGES.items():
        if key in CATALOG and CATALOG[key] != texts:
            raise ValueError(f"message key {key!r} is defined twice (again in {module.__name__})")
        CATALOG[key] = texts


def request_lang(request: Request) -> Lang:
    """Return the language asked for by ?lang=, else the cookie's, else Chinese."""
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    return "en" if asked == "en" else "zh"


def remember_lang(request: Request, response: Response) -> None:
    """Store an explicit ?lang= choice in the cookie, so later pages keep it."""
    asked = request.query_params.get("lang")
    if asked in ("zh", "en"):
        response.set_cookie(
            LANG_COOKIE, asked, max_age=LANG_COOKIE_MAX_AGE_S, samesite="lax", httponly=True
        )


class Translator:
    def __init__(self, lang: Lang) -> None:
        self.lang = lang
        self._index = 0 if lang == "zh" else 1

    def __call__(self, key: str, **values: object) -> str:
        text = CATALOG[key][self._index]
        return text.format(**values) if values else text
