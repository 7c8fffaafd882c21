"""The routers of the page areas, mounted by ``install_pages``."""

from fastapi import APIRouter

from fleet_server.web import province, school, student

AREA_ROUTERS: list[APIRouter] = [student.router, school.router, province.router]
