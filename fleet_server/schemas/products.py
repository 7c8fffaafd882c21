from datetime import date, datetime
from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from fleet_server.models import Product
from fleet_server.schemas.common import DivisionCodeStr, NameStr, RequestModel, UpdateModel
from fleet_server.schemas.counties import CountySummary

SAMPLE_NOTICE = "示例数据：认定编号、价格和包装重量为示例值，并非真实认定信息或售价"
SAMPLE_NOTICE_EN = (
    "Sample data: the certificate number, price and package weight are sample values, "
    "not real certification data or prices"
)

CertificateNumber = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s]+$")]
CategoryStr = Annotated[str, Field(min_length=1, max_length=50, examples=["茶叶"])]
# Money and weights are strict integers: 12.5, 1250.0 and "1250" are all rejected.
PriceFen = Annotated[
    int, Field(strict=True, gt=0, le=100_000_000, description="price in fen (0.01 yuan)")
]
Grams = Annotated[int, Field(strict=True, gt=0, le=1_000_000, description="grams")]
ToleranceGrams = Annotated[int, Field(strict=True, ge=0, le=1_000_000, description="grams")]


class ProductCreate(RequestModel):
    certificate_number: CertificateNumber
    name: NameStr
    name_en: NameStr | None = None
    supplier: NameStr | None = None
    source_county_code: DivisionCodeStr = Field(description="current or former division code")
    category: CategoryStr
    unit_weight_g: Grams
    weight_tolerance_g: ToleranceGrams
    price_fen: PriceFen
    valid_from: date
    valid_until: date
    is_sample: bool = False

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        check_product_fields(
            unit_weight_g=self.unit_weight_g,
            weight_tolerance_g=self.weight_tolerance_g,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
        )
        return self


class ProductUpdate(UpdateModel):
    """Changes to a product. The service checks the merged result again."""

    NOT_NULLABLE = frozenset(
        {
            "certificate_number",
            "name",
            "source_county_code",
            "category",
            "unit_weight_g",
            "weight_tolerance_g",
            "price_fen",
            "valid_from",
            "valid_until",
            "is_sample",
        }
    )

    certificate_number: CertificateNumber | None = None
    name: NameStr | None = None
    name_en: NameStr | None = None
    supplier: NameStr | None = None
    source_county_code: DivisionCodeStr | None = None
    category: CategoryStr | None = None
    unit_weight_g: Grams | None = None
    weight_tolerance_g: ToleranceGrams | None = None
    price_fen: PriceFen | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    is_sample: bool | None = None


def check_product_fields(
    *, unit_weight_g: int, weight_tolerance_g: int, valid_from: date, valid_until: date
) -> None:
    """Raise ValueError unless the tolerance is below the unit weight and validity is ordered."""
    if weight_tolerance_g >= unit_weight_g:
        raise ValueError(
            f"weight_tolerance_g ({weight_tolerance_g}) must be less than "
            f"unit_weight_g ({unit_weight_g})"
        )
    if valid_until < valid_from:
        raise ValueError(f"valid_until ({valid_until}) is before valid_from ({valid_from})")


class ProductPublic(BaseModel):
    id: int
    certificate_number: str
    name: str
    name_en: str | None
    supplier: str | None
    source_county: CountySummary
    category: str
    unit_weight_g: int
    weight_tolerance_g: int
    price_fen: int
    valid_from: date
    valid_until: date
    is_sample: bool
    sample_notice: str | None = Field(description="label to show next to sample values")
    sample_notice_en: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, product: Product) -> "ProductPublic":
        return cls(
            id=product.id,
            certificate_number=product.certificate_number,
            name=product.name,
            name_en=product.name_en,
            supplier=product.supplier,
            source_county=CountySummary.from_model(product.source_county),
            category=product.category,
            unit_weight_g=product.unit_weight_g,
            weight_tolerance_g=product.weight_tolerance_g,
            price_fen=product.price_fen,
            valid_from=product.valid_from,
            valid_until=product.valid_until,
            is_sample=product.is_sample,
            sample_notice=SAMPLE_NOTICE if product.is_sample else None,
            sample_notice_en=SAMPLE_NOTICE_EN if product.is_sample else None,
            created_at=product.created_at,
            updated_at=product.updated_at,
        )
