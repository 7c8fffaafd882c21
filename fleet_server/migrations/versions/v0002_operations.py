"""Add cabinet credentials, planograms, live cabinet state, stock and alerts.

Revision ID: 0002_operations
Revises: 0001
Created: 2026-12-04 20:39:34.899358
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_operations"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_conditions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("cabinet_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "offline",
                "door_forced",
                "door_left_open",
                "lock_fault",
                "scale_fault",
                "low_stock",
                "outbox_backlog",
                "disk_full",
                "serial_link_down",
                name="alert_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("active_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clear_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("observations", sa.Integer(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["cabinet_id"], ["cabinets.id"], name=op.f("fk_alert_conditions_cabinet_id_cabinets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_conditions")),
        sa.UniqueConstraint(
            "cabinet_id",
            "kind",
            "subject",
            name=op.f("uq_alert_conditions_cabinet_id_kind_subject"),
        ),
    )
    op.create_index("ix_alert_conditions_active", "alert_conditions", ["active"], unique=False)

    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("cabinet_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "offline",
                "door_forced",
                "door_left_open",
                "lock_fault",
                "scale_fault",
                "low_stock",
                "outbox_backlog",
                "disk_full",
                "serial_link_down",
                name="alert_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "open",
                "acknowledged",
                "resolved",
                name="alert_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=100), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=100), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.CheckConstraint("occurrences >= 1", name=op.f("ck_alerts_occurrences_positive")),
        sa.ForeignKeyConstraint(
            ["cabinet_id"], ["cabinets.id"], name=op.f("fk_alerts_cabinet_id_cabinets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_cabinet_id"), "alerts", ["cabinet_id"], unique=False)
    op.create_index("ix_alerts_state_raised_at", "alerts", ["state", "raised_at"], unique=False)
    op.create_index(
        "uq_alerts_unresolved",
        "alerts",
        ["cabinet_id", "kind", "subject"],
        unique=True,
        sqlite_where=sa.text("state <> 'resolved'"),
        postgresql_where=sa.text("state <> 'resolved'"),
    )

    op.create_table(
        "cabinet_states",
        sa.Column("cabinet_id", sa.Integer(), nullable=False),
        sa.Column(
            "connection",
            sa.Enum(
                "online",
                "offline",
                name="connection_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("connection_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "offline_reason",
            sa.Enum(
                "last_will",
                "disconnected",
                "heartbeat_timeout",
                name="offline_reason",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("status_reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_telemetry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("telemetry_reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("agent_version", sa.String(length=100), nullable=True),
        sa.Column("firmware_version", sa.String(length=100), nullable=True),
        sa.Column(
            "doors",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "shelves",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("backlog_sales", sa.Integer(), nullable=False),
        sa.Column("backlog_events", sa.Integer(), nullable=False),
        sa.Column("backlog_oldest_reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("serial_link_up", sa.Boolean(), nullable=True),
        sa.Column("session_state", sa.String(length=64), nullable=True),
        sa.Column("planogram_version", sa.Integer(), nullable=True),
        sa.Column("disk_free_bytes", sa.BigInteger(), nullable=True),
        sa.Column("last_board_restart_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "last_command_rejected",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "misplaced",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("planogram_resent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["cabinet_id"], ["cabinets.id"], name=op.f("fk_cabinet_states_cabinet_id_cabinets")
        ),
        sa.PrimaryKeyConstraint("cabinet_id", name=op.f("pk_cabinet_states")),
    )
    op.create_index(
        op.f("ix_cabinet_states_connection"), "cabinet_states", ["connection"], unique=False
    )

    op.create_table(
        "cabinet_stock",
        sa.Column("cabinet_id", sa.Integer(), nullable=False),
        sa.Column("shelf", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column(
            "source",
            sa.Enum(
                "restock",
                "weight",
                "sale",
                name="stock_source",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_cabinet_stock_quantity_non_negative")),
        sa.ForeignKeyConstraint(
            ["cabinet_id"], ["cabinets.id"], name=op.f("fk_cabinet_stock_cabinet_id_cabinets")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_cabinet_stock_product_id_products")
        ),
        sa.PrimaryKeyConstraint("cabinet_id", "shelf", "product_id", name=op.f("pk_cabinet_stock")),
    )
    op.create_index(
        op.f("ix_cabinet_stock_product_id"), "cabinet_stock", ["product_id"], unique=False
    )

    op.create_table(
        "planograms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cabinet_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_by_label", sa.String(length=100), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("publish_count", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("version >= 1", name=op.f("ck_planograms_version_positive")),
        sa.ForeignKeyConstraint(
            ["cabinet_id"], ["cabinets.id"], name=op.f("fk_planograms_cabinet_id_cabinets")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"],
            ["users.id"],
            name=op.f("fk_planograms_created_by_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planograms")),
        sa.UniqueConstraint("cabinet_id", "version", name=op.f("uq_planograms_cabinet_id_version")),
    )
    op.create_index(
        op.f("ix_planograms_created_by_user_id"), "planograms", ["created_by_user_id"], unique=False
    )

    op.create_table(
        "planogram_shelves",
        sa.Column("planogram_id", sa.Integer(), nullable=False),
        sa.Column("shelf", sa.Integer(), nullable=False),
        sa.Column("capacity_items", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "capacity_items >= 1", name=op.f("ck_planogram_shelves_capacity_items_positive")
        ),
        sa.CheckConstraint(
            "shelf BETWEEN 0 AND 255", name=op.f("ck_planogram_shelves_shelf_range")
        ),
        sa.ForeignKeyConstraint(
            ["planogram_id"],
            ["planograms.id"],
            name=op.f("fk_planogram_shelves_planogram_id_planograms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("planogram_id", "shelf", name=op.f("pk_planogram_shelves")),
    )
    op.create_table(
        "planogram_lines",
        sa.Column("planogram_id", sa.Integer(), nullable=False),
        sa.Column("shelf", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("price_overridden", sa.Boolean(), nullable=False),
        sa.Column("unit_weight_mg", sa.Integer(), nullable=False),
        sa.Column("tolerance_mg", sa.Integer(), nullable=False),
        sa.CheckConstraint("price_fen > 0", name=op.f("ck_planogram_lines_price_fen_positive")),
        sa.CheckConstraint(
            "tolerance_mg >= 0", name=op.f("ck_planogram_lines_tolerance_mg_non_negative")
        ),
        sa.CheckConstraint(
            "unit_weight_mg > 0", name=op.f("ck_planogram_lines_unit_weight_mg_positive")
        ),
        sa.ForeignKeyConstraint(
            ["planogram_id", "shelf"],
            ["planogram_shelves.planogram_id", "planogram_shelves.shelf"],
            name=op.f("fk_planogram_lines_planogram_id_planogram_shelves"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_planogram_lines_product_id_products")
        ),
        sa.PrimaryKeyConstraint(
            "planogram_id", "shelf", "product_id", name=op.f("pk_planogram_lines")
        ),
    )
    op.create_index(
        op.f("ix_planogram_lines_product_id"), "planogram_lines", ["product_id"], unique=False
    )

    with op.batch_alter_table("cabinets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("broker_username", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("broker_password_hash", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("hmac_key", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("credentials_issued_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_cabinets_broker_username"), ["broker_username"]
        )


def downgrade() -> None:
    with op.batch_alter_table("cabinets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_cabinets_broker_username"), type_="unique")
        batch_op.drop_column("credentials_issued_at")
        batch_op.drop_column("hmac_key")
        batch_op.drop_column("broker_password_hash")
        batch_op.drop_column("broker_username")

    op.drop_index(op.f("ix_planogram_lines_product_id"), table_name="planogram_lines")

    op.drop_table("planogram_lines")
    op.drop_table("planogram_shelves")
    op.drop_index(op.f("ix_planograms_created_by_user_id"), table_name="planograms")

    op.drop_table("planograms")
    op.drop_index(op.f("ix_cabinet_stock_product_id"), table_name="cabinet_stock")

    op.drop_table("cabinet_stock")
    op.drop_index(op.f("ix_cabinet_states_connection"), table_name="cabinet_states")

    op.drop_table("cabinet_states")
    op.drop_index("uq_alerts_unresolved", table_name="alerts")
    op.drop_index("ix_alerts_state_raised_at", table_name="alerts")
    op.drop_index(op.f("ix_alerts_cabinet_id"), table_name="alerts")

    op.drop_table("alerts")
    op.drop_index("ix_alert_conditions_active", table_name="alert_conditions")

    op.drop_table("alert_conditions")
