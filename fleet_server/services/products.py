"""The catalog of certified poverty-alleviation products (扶贫产品)."""

from datetime import date

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from fleet_server.models import County, Product
from fleet_server.schemas.products import ProductCreate, ProductUpdate, check_product_fields
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit, snapshot
from fleet_server.services.counties import get_county_by_code
from fleet_server.services.errors import ConflictError, InvalidInputError, NotFoundError
from fleet_server.services.pagination import PageResult, fetch_page

PRODUCT_FIELDS = (
    "certificate_number",
    "name",
    "name_en",
    "supplier",
    "source_county_id",
    "category",
    "unit_weight_g",
    "weight_tolerance_g",
    "price_fen",
    "valid_from",
    "valid_until",
    "is_sample",
)


def _products() -> Select[Product]:
    return select(Product).options(selectinload(Product.source_county).selectinload(County.codes))


def list_products(
    session: Session,
    *,
    limit: int,
    offset: int,
    county_code: str | None = None,
    category: str | None = None,
    valid_on: date | None = None,
) -> PageResult[Product]:
    """List the catalog. ``county_code`` may be a current or former division code."""
    statement = _products().order_by(Product.id)
    if county_code is not None:
        county = get_county_by_code(session, code=county_code)
        statement = statement.where(Product.source_county_id == county.id)
    if category is not None:
        statement = statement.where(Product.category == category)
    if valid_on is not None:
        statement = statement.where(Product.valid_from <= valid_on, Product.valid_until >= valid_on)
    return fetch_page(session, statement, limit=limit, offset=offset)


def get_product(session: Session, *, product_id: int) -> Product:
    product = session.scalar(_products().where(Product.id == product_id))
    if product is None:
        raise NotFoundError("product", product_id)
    return product


def _check_certificate_free(
    session: Session, *, certificate_number: str, product_id: int | None
) -> None:
    existing = session.scalar(
        select(Product.id).where(Product.certificate_number == certificate_number)
    )
    if existing is not None and existing != product_id:
        raise ConflictError("product", "certificate_number", certificate_number)


def create_product(session: Session, *, actor: Actor, data: ProductCreate) -> Product:
    _check_certificate_free(session, certificate_number=data.certificate_number, product_id=None)
    county = get_county_by_code(session, code=data.source_county_code)
    product = Product(
        certificate_number=data.certificate_number,
        name=data.name,
        name_en=data.name_en,
        supplier=data.supplier,
        source_county=county,
        category=data.category,
        unit_weight_g=data.unit_weight_g,
        weight_tolerance_g=data.weight_tolerance_g,
        price_fen=data.price_fen,
        valid_from=data.valid_from,
        valid_until=data.valid_until,
        is_sample=data.is_sample,
    )
    session.add(product)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="product.create",
        object_type="product",
        object_id=product.id,
        after=snapshot(product, PRODUCT_FIELDS),
    )
    return product


def update_product(
    session: Session, *, actor: Actor, product_id: int, data: ProductUpdate
) -> Product:
    """Apply the changes and record each changed field, the price included, in the audit log."""
    product = get_product(session, product_id=product_id)
    changes = data.changes()
    if "certificate_number" in changes:
        _check_certificate_free(
            session, certificate_number=changes["certificate_number"], product_id=product.id
        )
    county_code = changes.pop("source_county_code", None)
    if county_code is not None:
        changes["source_county_id"] = get_county_by_code(session, code=county_code).id

    merged = {field: changes.get(field, getattr(product, field)) for field in PRODUCT_FIELDS}
    try:
        check_product_fields(
            unit_weight_g=merged["unit_weight_g"],
            weight_tolerance_g=merged["weight_tolerance_g"],
            valid_from=merged["valid_from"],
            valid_until=merged["valid_until"],
        )
    except ValueError as error:
        raise InvalidInputError(
            code="product_fields_inconsistent",
            message="称重容差必须小于单件重量，且有效期截止日期不得早于起始日期",
            message_en=str(error),
        ) from error

    before = snapshot(product, PRODUCT_FIELDS)
    for field, value in changes.items():
        setattr(product, field, value)
    session.flush()
    if "source_county_id" in changes:
        session.expire(product, ["source_county"])
    after = snapshot(product, PRODUCT_FIELDS)
    changed = [field for field in PRODUCT_FIELDS if before[field] != after[field]]
    if changed:
        record_audit(
            session,
            actor=actor,
            action="product.update",
            object_type="product",
            object_id=product.id,
            before={field: before[field] for field in changed},
            after={field: after[field] for field in changed},
        )
    return product
