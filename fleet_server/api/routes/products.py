from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, status

from fleet_server.api.deps import (
    CurrentActor,
    PageLimit,
    PageOffset,
    ProvinceAdminActor,
    SessionDep,
)
from fleet_server.api.errors import error_responses
from fleet_server.schemas.common import Page, Text
from fleet_server.schemas.products import ProductCreate, ProductPublic, ProductUpdate
from fleet_server.services import products as product_service
from fleet_server.services.pagination import DEFAULT_PAGE_LIMIT

router = APIRouter(prefix="/products", tags=["products"])


@router.get("", responses=error_responses(401, 404, 422))
def list_products(
    session: SessionDep,
    actor: CurrentActor,
    county_code: Annotated[
        str | None, Query(pattern=r"^\d{6}$", description="current or former division code")
    ] = None,
    category: Text | None = None,
    valid_on: Annotated[
        date | None, Query(description="only products whose certificate is valid on this day")
    ] = None,
    limit: PageLimit = DEFAULT_PAGE_LIMIT,
    offset: PageOffset = 0,
) -> Page[ProductPublic]:
    """List the certified-product catalog. Products with sample values carry a sample_notice."""
    page = product_service.list_products(
        session,
        limit=limit,
        offset=offset,
        county_code=county_code,
        category=category,
        valid_on=valid_on,
    )
    return Page[ProductPublic](
        items=[ProductPublic.from_model(product) for product in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=error_responses(401, 403, 404, 409, 422)
)
def create_product(
    session: SessionDep, actor: ProvinceAdminActor, body: ProductCreate
) -> ProductPublic:
    product = product_service.create_product(session, actor=actor, data=body)
    session.commit()
    return ProductPublic.from_model(product)


@router.get("/{product_id}", responses=error_responses(401, 404, 422))
def get_product(session: SessionDep, actor: CurrentActor, product_id: int) -> ProductPublic:
    return ProductPublic.from_model(product_service.get_product(session, product_id=product_id))


@router.patch("/{product_id}", responses=error_responses(401, 403, 404, 409, 422))
def update_product(
    session: SessionDep, actor: ProvinceAdminActor, product_id: int, body: ProductUpdate
) -> ProductPublic:
    """Change a product. Every change, the price included, is written to the audit log."""
    product = product_service.update_product(session, actor=actor, product_id=product_id, data=body)
    session.commit()
    return ProductPublic.from_model(product)
