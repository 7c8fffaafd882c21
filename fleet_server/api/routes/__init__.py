"""Routes of the JSON API, one module per resource, mounted under /api/v1."""

from fastapi import APIRouter

from fleet_server.api.routes import (
    auth,
    buildings,
    cabinets,
    counties,
    operators,
    products,
    schools,
)

API_PREFIX = "/api/v1"

api_router = APIRouter(prefix=API_PREFIX)
api_router.include_router(auth.router)
api_router.include_router(schools.router)
api_router.include_router(buildings.router)
api_router.include_router(operators.router)
api_router.include_router(cabinets.router)
api_router.include_router(counties.router)
api_router.include_router(products.router)
