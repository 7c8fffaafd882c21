"""The routers of the page areas, mounted by ``install_pages``."""

from fastapi import APIRouter

from fleet_server.web import province, school

AREA_ROUTERS: list[APIRouter] = [school.router, province.router]
