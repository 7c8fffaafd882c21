"""Add the procurement ledger, daily totals, weekly reports and vouchers.

Revision ID: 0004
Revises: 0003
Created: 2026-12-04 23:10:05.976926
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "procurement_daily_totals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("reported_week", sa.Date(), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column(
            "channel",
            sa.Enum(
                "cabinet",
                "canteen",
                "union_welfare",
                "campus_shop",
                "service_company",
                name="procurement_channel",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("county_code", sa.String(length=6), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["schools.id"],
            name=op.f("fk_procurement_daily_totals_school_id_schools"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_procurement_daily_totals")),
        sa.UniqueConstraint(
            "school_id",
            "reported_week",
            "occurred_on",
            "channel",
            "county_code",
            "reason",
            name=op.f(
                "uq_procurement_daily_totals_school_id_reported_week_occurred_on_channel_county_code_reason"
            ),
        ),
    )
    with op.batch_alter_table("procurement_daily_totals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_procurement_daily_totals_reported_week", ["reported_week"], unique=False
        )

    op.create_table(
        "procurement_reports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("week", sa.Date(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "submitted",
                "seen",
                name="report_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_by", sa.Integer(), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seen_by", sa.Integer(), nullable=True),
        sa.Column(
            "figures",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["schools.id"], name=op.f("fk_procurement_reports_school_id_schools")
        ),
        sa.ForeignKeyConstraint(
            ["seen_by"], ["users.id"], name=op.f("fk_procurement_reports_seen_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["submitted_by"], ["users.id"], name=op.f("fk_procurement_reports_submitted_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_procurement_reports")),
        sa.UniqueConstraint(
            "school_id", "week", name=op.f("uq_procurement_reports_school_id_week")
        ),
    )
    with op.batch_alter_table("procurement_reports", schema=None) as batch_op:
        batch_op.create_index("ix_procurement_reports_week", ["week"], unique=False)

    op.create_table(
        "voucher_files",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_by", sa.Integer(), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("size_bytes > 0", name=op.f("ck_voucher_files_size_bytes_positive")),
        sa.ForeignKeyConstraint(
            ["school_id"], ["schools.id"], name=op.f("fk_voucher_files_school_id_schools")
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by"], ["users.id"], name=op.f("fk_voucher_files_uploaded_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_files")),
    )
    with op.batch_alter_table("voucher_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_voucher_files_school_id"), ["school_id"], unique=False)

    op.create_table(
        "procurement_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column(
            "channel",
            sa.Enum(
                "cabinet",
                "canteen",
                "union_welfare",
                "campus_shop",
                "service_company",
                name="procurement_channel",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("product_name", sa.String(length=200), nullable=False),
        sa.Column("certificate_number", sa.String(length=64), nullable=True),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("county_code", sa.String(length=6), nullable=True),
        sa.Column("county_id", sa.Integer(), nullable=True),
        sa.Column("county_name", sa.String(length=100), nullable=False),
        sa.Column("supplier", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=14, scale=3), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("voucher_ref", sa.String(length=100), nullable=False),
        sa.Column(
            "voucher_file_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "not_counting_reason",
            sa.Enum(
                "not_certified",
                "certificate_not_valid",
                "not_poverty_county",
                "county_mismatch",
                "not_paid",
                name="not_counting_reason",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("reported_week", sa.Date(), nullable=False),
        sa.Column(
            "source",
            sa.Enum(
                "form",
                "import",
                name="entry_source",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("import_batch", sa.String(length=36), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("void_reason", sa.String(length=500), nullable=True),
        sa.Column("voided_in_week", sa.Date(), nullable=True),
        sa.CheckConstraint(
            "channel <> 'cabinet'", name=op.f("ck_procurement_entries_not_cabinet_channel")
        ),
        sa.CheckConstraint(
            "(voided_at IS NULL) = (void_reason IS NULL)",
            name=op.f("ck_procurement_entries_void_has_reason"),
        ),
        sa.CheckConstraint(
            "amount_fen > 0", name=op.f("ck_procurement_entries_amount_fen_positive")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_procurement_entries_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["county_id"], ["counties.id"], name=op.f("fk_procurement_entries_county_id_counties")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_procurement_entries_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_procurement_entries_product_id_products")
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["schools.id"], name=op.f("fk_procurement_entries_school_id_schools")
        ),
        sa.ForeignKeyConstraint(
            ["voucher_file_id"],
            ["voucher_files.id"],
            name=op.f("fk_procurement_entries_voucher_file_id_voucher_files"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_procurement_entries")),
    )
    with op.batch_alter_table("procurement_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_procurement_entries_import_batch"), ["import_batch"], unique=False
        )
        batch_op.create_index(
            "ix_procurement_entries_school_id_occurred_on",
            ["school_id", "occurred_on"],
            unique=False,
        )


def downgrade() -> None:

    with op.batch_alter_table("procurement_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_procurement_entries_school_id_occurred_on")
        batch_op.drop_index(batch_op.f("ix_procurement_entries_import_batch"))

    op.drop_table("procurement_entries")
    with op.batch_alter_table("voucher_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voucher_files_school_id"))

    op.drop_table("voucher_files")
    with op.batch_alter_table("procurement_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_procurement_reports_week")

    op.drop_table("procurement_reports")
    with op.batch_alter_table("procurement_daily_totals", schema=None) as batch_op:
        batch_op.drop_index("ix_procurement_daily_totals_reported_week")

    op.drop_table("procurement_daily_totals")
