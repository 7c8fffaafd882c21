"""The routers of the page areas, mounted by ``install_pages``."""

from fastapi import APIRouter

from fleet_server.web.operator import router as operator_router

AREA_ROUTERS: list[APIRouter] = [operator_router]
