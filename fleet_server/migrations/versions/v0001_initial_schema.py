"""Create the registry, catalog, user and audit tables.

Revision ID: 0001
Revises: none
Created: 2026-12-04 20:14:20.072872
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "counties",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("city", sa.String(length=50), nullable=False),
        sa.Column(
            "level",
            sa.Enum(
                "national",
                "provincial",
                name="county_level",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("level_derived", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_counties")),
        sa.UniqueConstraint("name", name=op.f("uq_counties_name")),
    )
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column("credit_code", sa.String(length=18), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("credit_code", name=op.f("uq_operators_credit_code")),
        sa.UniqueConstraint("name", name=op.f("uq_operators_name")),
    )
    op.create_table(
        "schools",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column(
            "school_type",
            sa.Enum(
                "undergraduate",
                "vocational",
                name="school_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("city", sa.String(length=50), nullable=False),
        sa.Column("enrollment", sa.Integer(), nullable=True),
        sa.Column("enrollment_as_of", sa.String(length=20), nullable=True),
        sa.Column("staff_count", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("enrollment >= 0", name=op.f("ck_schools_enrollment_non_negative")),
        sa.CheckConstraint("staff_count >= 0", name=op.f("ck_schools_staff_count_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schools")),
        sa.UniqueConstraint("name", name=op.f("uq_schools_name")),
    )
    op.create_table(
        "buildings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "location_type",
            sa.Enum(
                "dormitory",
                "canteen",
                "library",
                "sports_venue",
                "staff_living",
                "other",
                name="location_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("latitude_microdeg", sa.Integer(), nullable=True),
        sa.Column("longitude_microdeg", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(latitude_microdeg IS NULL) = (longitude_microdeg IS NULL)",
            name=op.f("ck_buildings_coordinates_paired"),
        ),
        sa.CheckConstraint("capacity >= 0", name=op.f("ck_buildings_capacity_non_negative")),
        sa.CheckConstraint(
            "latitude_microdeg BETWEEN -90000000 AND 90000000",
            name=op.f("ck_buildings_latitude_microdeg_range"),
        ),
        sa.CheckConstraint(
            "longitude_microdeg BETWEEN -180000000 AND 180000000",
            name=op.f("ck_buildings_longitude_microdeg_range"),
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["schools.id"], name=op.f("fk_buildings_school_id_schools")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_buildings")),
        sa.UniqueConstraint("school_id", "name", name=op.f("uq_buildings_school_id_name")),
    )
    op.create_table(
        "county_codes",
        sa.Column("code", sa.String(length=6), nullable=False),
        sa.Column("county_id", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("name_then", sa.String(length=200), nullable=False),
        sa.Column("city_then", sa.String(length=50), nullable=False),
        sa.Column("replaced_in_year", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["county_id"], ["counties.id"], name=op.f("fk_county_codes_county_id_counties")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_county_codes")),
    )
    op.create_index(op.f("ix_county_codes_county_id"), "county_codes", ["county_id"], unique=False)
    op.create_index(
        "uq_county_codes_current_per_county",
        "county_codes",
        ["county_id"],
        unique=True,
        sqlite_where=sa.text("is_current"),
        postgresql_where=sa.text("is_current"),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("certificate_number", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=True),
        sa.Column("supplier", sa.String(length=200), nullable=True),
        sa.Column("source_county_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=50), nullable=False),
        sa.Column("unit_weight_g", sa.Integer(), nullable=False),
        sa.Column("weight_tolerance_g", sa.Integer(), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("is_sample", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("price_fen > 0", name=op.f("ck_products_price_fen_positive")),
        sa.CheckConstraint("unit_weight_g > 0", name=op.f("ck_products_unit_weight_g_positive")),
        sa.CheckConstraint("valid_until >= valid_from", name=op.f("ck_products_validity_ordered")),
        sa.CheckConstraint(
            "weight_tolerance_g >= 0 AND weight_tolerance_g < unit_weight_g",
            name=op.f("ck_products_weight_tolerance_g_range"),
        ),
        sa.ForeignKeyConstraint(
            ["source_county_id"],
            ["counties.id"],
            name=op.f("fk_products_source_county_id_counties"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("certificate_number", name=op.f("uq_products_certificate_number")),
    )
    op.create_index(
        op.f("ix_products_source_county_id"), "products", ["source_county_id"], unique=False
    )
    op.create_table(
        "school_designated_counties",
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("county_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["county_id"],
            ["counties.id"],
            name=op.f("fk_school_designated_counties_county_id_counties"),
        ),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["schools.id"],
            name=op.f("fk_school_designated_counties_school_id_schools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "school_id", "county_id", name=op.f("pk_school_designated_counties")
        ),
    )
    op.create_index(
        op.f("ix_school_designated_counties_county_id"),
        "school_designated_counties",
        ["county_id"],
        unique=False,
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "student",
                "operator",
                "school_admin",
                "province_admin",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("school_id", sa.Integer(), nullable=True),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(role = 'operator') = (operator_id IS NOT NULL)",
            name=op.f("ck_users_operator_has_operator"),
        ),
        sa.CheckConstraint(
            "role <> 'province_admin' OR school_id IS NULL",
            name=op.f("ck_users_province_admin_unscoped"),
        ),
        sa.CheckConstraint(
            "role <> 'school_admin' OR school_id IS NOT NULL",
            name=op.f("ck_users_school_admin_has_school"),
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_users_operator_id_operators")
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["schools.id"], name=op.f("fk_users_school_id_schools")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_index(op.f("ix_users_operator_id"), "users", ["operator_id"], unique=False)
    op.create_index(op.f("ix_users_school_id"), "users", ["school_id"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("actor_label", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column(
            "before",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "after",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["actor_user_id"], ["users.id"], name=op.f("fk_audit_log_actor_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(
        op.f("ix_audit_log_actor_user_id"), "audit_log", ["actor_user_id"], unique=False
    )
    op.create_index(
        "ix_audit_log_object", "audit_log", ["object_type", "object_id", "at"], unique=False
    )
    op.create_table(
        "placements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("building_id", sa.Integer(), nullable=False),
        sa.Column("floor", sa.Integer(), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("latitude_microdeg", sa.Integer(), nullable=True),
        sa.Column("longitude_microdeg", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(latitude_microdeg IS NULL) = (longitude_microdeg IS NULL)",
            name=op.f("ck_placements_coordinates_paired"),
        ),
        sa.CheckConstraint(
            "latitude_microdeg BETWEEN -90000000 AND 90000000",
            name=op.f("ck_placements_latitude_microdeg_range"),
        ),
        sa.CheckConstraint(
            "longitude_microdeg BETWEEN -180000000 AND 180000000",
            name=op.f("ck_placements_longitude_microdeg_range"),
        ),
        sa.ForeignKeyConstraint(
            ["building_id"], ["buildings.id"], name=op.f("fk_placements_building_id_buildings")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_placements")),
    )
    op.create_index(op.f("ix_placements_building_id"), "placements", ["building_id"], unique=False)
    op.create_table(
        "cabinets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kiosk_id", sa.String(length=32), nullable=False),
        sa.Column("placement_id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("firmware_version", sa.String(length=64), nullable=True),
        sa.Column(
            "service_status",
            sa.Enum(
                "provisioned",
                "in_service",
                "out_of_service",
                "retired",
                name="cabinet_service_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_cabinets_operator_id_operators")
        ),
        sa.ForeignKeyConstraint(
            ["placement_id"], ["placements.id"], name=op.f("fk_cabinets_placement_id_placements")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cabinets")),
        sa.UniqueConstraint("kiosk_id", name=op.f("uq_cabinets_kiosk_id")),
    )
    op.create_index(op.f("ix_cabinets_operator_id"), "cabinets", ["operator_id"], unique=False)
    op.create_index(op.f("ix_cabinets_placement_id"), "cabinets", ["placement_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_cabinets_placement_id"), table_name="cabinets")
    op.drop_index(op.f("ix_cabinets_operator_id"), table_name="cabinets")
    op.drop_table("cabinets")
    op.drop_index(op.f("ix_placements_building_id"), table_name="placements")
    op.drop_table("placements")
    op.drop_index("ix_audit_log_object", table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_actor_user_id"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_users_school_id"), table_name="users")
    op.drop_index(op.f("ix_users_operator_id"), table_name="users")
    op.drop_table("users")
    op.drop_index(
        op.f("ix_school_designated_counties_county_id"), table_name="school_designated_counties"
    )
    op.drop_table("school_designated_counties")
    op.drop_index(op.f("ix_products_source_county_id"), table_name="products")
    op.drop_table("products")
    op.drop_index(
        "uq_county_codes_current_per_county",
        table_name="county_codes",
        sqlite_where=sa.text("is_current"),
        postgresql_where=sa.text("is_current"),
    )
    op.drop_index(op.f("ix_county_codes_county_id"), table_name="county_codes")
    op.drop_table("county_codes")
    op.drop_table("buildings")
    op.drop_table("schools")
    op.drop_table("operators")
    op.drop_table("counties")
