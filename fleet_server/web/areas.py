"""The routers of the page areas, mounted by ``install_pages``."""

from fastapi import APIRouter

from fleet_server.web import province, school, student
from fleet_server.web.operator import router as operator_router

AREA_ROUTERS: list[APIRouter] = [
    student.router,
    operator_router,
    school.router,
    province.router,
]
