"""The routers of the page areas, mounted by ``install_pages``."""

from fastapi import APIRouter

AREA_ROUTERS: list[APIRouter] = []
