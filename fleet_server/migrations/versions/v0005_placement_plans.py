"""Add placement plans.

Revision ID: 0005
Revises: 0004
Created: 2026-12-04 23:24:55.624520
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "placement_plans",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "submitted",
                name="plan_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("enrollment", sa.Integer(), nullable=False),
        sa.Column("staff_count", sa.Integer(), nullable=True),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column(
            "allocation",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("submitted_by", sa.Integer(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("total >= 0", name=op.f("ck_placement_plans_total_non_negative")),
        sa.ForeignKeyConstraint(
            ["school_id"], ["schools.id"], name=op.f("fk_placement_plans_school_id_schools")
        ),
        sa.ForeignKeyConstraint(
            ["submitted_by"], ["users.id"], name=op.f("fk_placement_plans_submitted_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_placement_plans")),
    )
    with op.batch_alter_table("placement_plans", schema=None) as batch_op:
        batch_op.create_index(
            "ix_placement_plans_school_id_submitted_at", ["school_id", "submitted_at"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("placement_plans", schema=None) as batch_op:
        batch_op.drop_index("ix_placement_plans_school_id_submitted_at")

    op.drop_table("placement_plans")
