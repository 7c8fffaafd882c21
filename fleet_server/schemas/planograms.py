"""Bodies for planograms (商品陈列图): which certified products sit on which shelf."""

from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, Field, StrictBool, model_validator

from fleet_server.models import Planogram, PlanogramLine
from fleet_server.schemas.common import RequestModel
from fleet_server.schemas.counties import CountySummary
from fleet_server.schemas.products import SAMPLE_NOTICE, SAMPLE_NOTICE_EN, PriceFen
from kiosk_agent.contract import MAX_DOOR_INDEX as CONTRACT_MAX_DOOR_INDEX

# The planogram check enumerates every way to take up to four packs from a shelf, so its
# work grows with the fourth power of the products there: 495 ways with eight.
MAX_PRODUCTS_PER_SHELF = 8
MAX_SHELF_INDEX = 255
# The bus reserves door 255 for "all doors".
MAX_DOOR_INDEX = CONTRACT_MAX_DOOR_INDEX
MAX_CAPACITY_ITEMS = 10_000


class PlanogramLineIn(RequestModel):
    product_id: int = Field(description="id of a certified product in the catalog")
    price_fen: PriceFen | None = Field(
        default=None, description="price in fen for this cabinet; default: the catalog price"
    )


class PlanogramShelfIn(RequestModel):
    shelf: Annotated[int, Field(strict=True, ge=0, le=MAX_SHELF_INDEX)] = Field(
        description="shelf index on the cabinet's bus, 0 to 255"
    )
    door: Annotated[int, Field(strict=True, ge=0, le=MAX_DOOR_INDEX)] | None = Field(
        default=None,
        description=(
            f"index of the door the shelf is behind, 0 to {MAX_DOOR_INDEX}; give it for every "
            "shelf or for none. With doors, a layout where a pack put back on another shelf "
            "behind the same door weighs like that shelf's own packs is rejected"
        ),
    )
    capacity_items: Annotated[int, Field(strict=True, ge=1, le=MAX_CAPACITY_ITEMS)] = Field(
        description="number of packs that fit on the shelf"
    )
    products: Annotated[
        list[PlanogramLineIn], Field(min_length=1, max_length=MAX_PRODUCTS_PER_SHELF)
    ]

    @model_validator(mode="after")
    def _check_unique_products(self) -> Self:
        seen: set[int] = set()
        for line in self.products:
            if line.product_id in seen:
                raise ValueError(f"product {line.product_id} is listed twice on shelf {self.shelf}")
            seen.add(line.product_id)
        return self


class PlanogramUpdate(RequestModel):
    """A whole new planogram; it replaces the one in force as the next version."""

    shelves: Annotated[list[PlanogramShelfIn], Field(min_length=1, max_length=MAX_SHELF_INDEX + 1)]
    base_version: int | None = Field(
        default=None,
        description="version the edit started from; a different current version gives 409",
    )
    accept_misplaced_reviews: StrictBool = Field(
        default=False,
        description=(
            "save although, with the doors given, a pack put back on another shelf behind "
            "the same door would pass for that shelf's own packs; the sessions that take "
            "such a pack go to review, and the conflicts come back as warnings"
        ),
    )

    @model_validator(mode="after")
    def _check_unique_shelves(self) -> Self:
        seen: set[int] = set()
        for shelf in self.shelves:
            if shelf.shelf in seen:
                raise ValueError(f"shelf {shelf.shelf} is listed twice")
            seen.add(shelf.shelf)
        return self

    def doors(self) -> dict[int, int]:
        """Return shelf -> door for the shelves whose door is given."""
        return {shelf.shelf: shelf.door for shelf in self.shelves if shelf.door is not None}


class PlanogramProductPublic(BaseModel):
    product_id: int
    certificate_number: str
    name: str
    name_en: str | None
    source_county: CountySummary
    unit_weight_g: float = Field(description="pack weight sent to the cabinet, in grams")
    weight_tolerance_g: float
    price_fen: int = Field(description="price sent to the cabinet, in fen")
    catalog_price_fen: int = Field(description="the catalog's current price, in fen")
    price_overridden: bool
    is_sample: bool
    sample_notice: str | None
    sample_notice_en: str | None

    @classmethod
    def from_model(cls, line: PlanogramLine) -> "PlanogramProductPublic":
        product = line.product
        return cls(
            product_id=product.id,
            certificate_number=product.certificate_number,
            name=product.name,
            name_en=product.name_en,
            source_county=CountySummary.from_model(product.source_county),
            unit_weight_g=line.unit_weight_mg / 1000,
            weight_tolerance_g=line.tolerance_mg / 1000,
            price_fen=line.price_fen,
            catalog_price_fen=product.price_fen,
            price_overridden=line.price_overridden,
            is_sample=product.is_sample,
            sample_notice=SAMPLE_NOTICE if product.is_sample else None,
            sample_notice_en=SAMPLE_NOTICE_EN if product.is_sample else None,
        )


class PlanogramShelfPublic(BaseModel):
    shelf: int
    door: int | None = Field(description="index of the door the shelf is behind, if given")
    capacity_items: int
    products: list[PlanogramProductPublic]


class PlanogramPublic(BaseModel):
    kiosk_id: str
    version: int
    created_at: datetime
    created_by: str
    published_at: datetime | None = Field(description="when the broker last accepted it")
    applied_at: datetime | None = Field(description="when the cabinet reported it in force")
    shelves: list[PlanogramShelfPublic]

    @classmethod
    def from_model(cls, planogram: Planogram) -> "PlanogramPublic":
        return cls(
            kiosk_id=planogram.cabinet.kiosk_id,
            version=planogram.version,
            created_at=planogram.created_at,
            created_by=planogram.created_by_label,
            published_at=planogram.published_at,
            applied_at=planogram.applied_at,
            shelves=[
                PlanogramShelfPublic(
                    shelf=shelf.shelf,
                    door=shelf.door,
                    capacity_items=shelf.capacity_items,
                    products=[PlanogramProductPublic.from_model(line) for line in shelf.lines],
                )
                for shelf in planogram.shelves
            ],
        )


class PlanogramWarning(BaseModel):
    """A coincidence that a pack put back on a shelf could cause; the planogram still works."""

    shelf: int
    code: str = Field(description="misplaced_pack or return_coincidence")
    message: str
    message_en: str


class PlanogramSaved(BaseModel):
    planogram: PlanogramPublic
    warnings: list[PlanogramWarning]
    published: bool = Field(description="whether the broker accepted the planogram command")
    publish_error: str | None = Field(
        default=None,
        description="why it was not published; it is sent again when the cabinet connects",
    )
    publish_error_en: str | None = None
