"""Certified poverty-alleviation products (扶贫产品) sold in the cabinets."""

from datetime import date, datetime

from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet_server.models.base import Base, CreatedAt, IntPk, Name, UTCDateTime, utc_now
from fleet_server.models.counties import County


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price_fen > 0", name="price_fen_positive"),
        CheckConstraint("unit_weight_g > 0", name="unit_weight_g_positive"),
        CheckConstraint(
            "weight_tolerance_g >= 0 AND weight_tolerance_g < unit_weight_g",
            name="weight_tolerance_g_range",
        ),
        CheckConstraint("valid_until >= valid_from", name="validity_ordered"),
    )

    id: Mapped[IntPk]
    # 认定编号, unique across the province's catalog.
    certificate_number: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[Name]
    name_en: Mapped[Name | None]
    supplier: Mapped[str | None] = mapped_column(String(200))
    # 产品来源: lists the products of a county (filter in the product list).
    source_county_id: Mapped[int] = mapped_column(ForeignKey("counties.id"), index=True)
    category: Mapped[str] = mapped_column(String(50))
    # Weight of one package in grams, as the shelf scales report it.
    unit_weight_g: Mapped[int] = mapped_column(Integer())
    # Allowed deviation of one package from unit_weight_g, in grams.
    weight_tolerance_g: Mapped[int] = mapped_column(Integer())
    # Retail price of one package in fen (0.01 yuan).
    price_fen: Mapped[int] = mapped_column(Integer())
    valid_from: Mapped[date] = mapped_column(Date())
    valid_until: Mapped[date] = mapped_column(Date())
    # True when certificate number, price and package weight are sample values made up for
    # demonstration (seed data), which the product must label wherever it shows them.
    is_sample: Mapped[bool] = mapped_column(Boolean(), default=False)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)

    source_county: Mapped[County] = relationship()
