"""The routers of the page areas, mounted by ``install_pages``."""

from fastapi import APIRouter

from fleet_server.web import student

AREA_ROUTERS: list[APIRouter] = [student.router]
