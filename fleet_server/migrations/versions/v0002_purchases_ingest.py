"""Create wallets, payment holds, purchase sessions, sales, cabinet events and dead letters.

Revision ID: 0002_purchases
Revises: 0001
Created: 2026-12-04 21:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_purchases"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("topic", sa.String(length=256), nullable=False),
        sa.Column("kiosk_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("payload_excerpt", sa.Text(), nullable=False),
        sa.Column("payload_bytes", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index(
        op.f("ix_dead_letters_received_at"), "dead_letters", ["received_at"], unique=False
    )
    op.create_table(
        "wallets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("balance_fen", sa.BigInteger(), nullable=False),
        sa.Column("held_fen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("balance_fen >= 0", name=op.f("ck_wallets_balance_fen_non_negative")),
        sa.CheckConstraint("held_fen <= balance_fen", name=op.f("ck_wallets_held_within_balance")),
        sa.CheckConstraint("held_fen >= 0", name=op.f("ck_wallets_held_fen_non_negative")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_wallets_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallets")),
        sa.UniqueConstraint("user_id", name=op.f("uq_wallets_user_id")),
    )
    op.create_table(
        "payment_holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("wallet_id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "held",
                "captured",
                "released",
                name="hold_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("captured_fen", sa.Integer(), nullable=False),
        sa.Column("refunded_fen", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_payment_holds_amount_fen_positive")),
        sa.CheckConstraint(
            "captured_fen >= 0 AND captured_fen <= amount_fen",
            name=op.f("ck_payment_holds_captured_within_amount"),
        ),
        sa.CheckConstraint(
            "refunded_fen >= 0 AND refunded_fen <= captured_fen",
            name=op.f("ck_payment_holds_refunded_within_captured"),
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["wallets.id"], name=op.f("fk_payment_holds_wallet_id_wallets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_holds")),
        sa.UniqueConstraint("reference", name=op.f("uq_payment_holds_reference")),
    )
    op.create_index(
        op.f("ix_payment_holds_wallet_id"), "payment_holds", ["wallet_id"], unique=False
    )
    op.create_table(
        "kiosk_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kiosk_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("cabinet_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "stock",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cabinet_id"], ["cabinets.id"], name=op.f("fk_kiosk_events_cabinet_id_cabinets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kiosk_events")),
        sa.UniqueConstraint("kiosk_id", "event_id", name=op.f("uq_kiosk_events_kiosk_id_event_id")),
    )
    op.create_index(
        "ix_kiosk_events_cabinet_id_at", "kiosk_events", ["cabinet_id", "at"], unique=False
    )
    op.create_index("ix_kiosk_events_session_id", "kiosk_events", ["session_id"], unique=False)
    op.create_table(
        "purchase_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("cabinet_id", sa.Integer(), nullable=False),
        sa.Column("door", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "created",
                "unlock_sent",
                "unlocked",
                "door_open",
                "settling",
                "completed",
                "cancelled",
                "failed",
                "expired",
                name="purchase_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("command_id", sa.Uuid(), nullable=False),
        sa.Column("hold_id", sa.Uuid(), nullable=False),
        sa.Column("hold_amount_fen", sa.Integer(), nullable=False),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "hold_amount_fen > 0", name=op.f("ck_purchase_sessions_hold_amount_fen_positive")
        ),
        sa.ForeignKeyConstraint(
            ["cabinet_id"], ["cabinets.id"], name=op.f("fk_purchase_sessions_cabinet_id_cabinets")
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"],
            ["payment_holds.id"],
            name=op.f("fk_purchase_sessions_hold_id_payment_holds"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_purchase_sessions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_sessions")),
        sa.UniqueConstraint("command_id", name=op.f("uq_purchase_sessions_command_id")),
        sa.UniqueConstraint("hold_id", name=op.f("uq_purchase_sessions_hold_id")),
    )
    op.create_index(
        "ix_purchase_sessions_state_deadline_at",
        "purchase_sessions",
        ["state", "deadline_at"],
        unique=False,
    )
    op.create_index(
        "ix_purchase_sessions_user_id_created_at",
        "purchase_sessions",
        ["user_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_purchase_sessions_active_cabinet",
        "purchase_sessions",
        ["cabinet_id"],
        unique=True,
        sqlite_where=sa.text(
            "state IN ('created', 'unlock_sent', 'unlocked', 'door_open', 'settling')"
        ),
        postgresql_where=sa.text(
            "state IN ('created', 'unlock_sent', 'unlocked', 'door_open', 'settling')"
        ),
    )
    op.create_table(
        "wallet_transactions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("wallet_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "top_up",
                "hold",
                "capture",
                "release",
                "refund",
                name="transaction_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("hold_id", sa.Uuid(), nullable=True),
        sa.Column("balance_after_fen", sa.BigInteger(), nullable=False),
        sa.Column("held_after_fen", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "amount_fen > 0", name=op.f("ck_wallet_transactions_amount_fen_positive")
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"],
            ["payment_holds.id"],
            name=op.f("fk_wallet_transactions_hold_id_payment_holds"),
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["wallets.id"], name=op.f("fk_wallet_transactions_wallet_id_wallets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_transactions")),
    )
    op.create_index(
        op.f("ix_wallet_transactions_hold_id"), "wallet_transactions", ["hold_id"], unique=False
    )
    op.create_index(
        "ix_wallet_transactions_wallet_id_id",
        "wallet_transactions",
        ["wallet_id", "id"],
        unique=False,
    )
    op.create_index(
        "uq_wallet_transactions_kind_reference",
        "wallet_transactions",
        ["kind", "reference"],
        unique=True,
    )
    op.create_table(
        "sales",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kiosk_id", sa.String(length=64), nullable=False),
        sa.Column("sale_id", sa.Uuid(), nullable=False),
        sa.Column("cabinet_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("purchase_session_id", sa.Uuid(), nullable=True),
        sa.Column(
            "outcome",
            sa.Enum(
                "completed",
                "nothing_taken",
                "door_not_opened",
                "forced_open",
                "lock_fault",
                "cancelled",
                name="sale_outcome",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("planogram_version", sa.Integer(), nullable=False),
        sa.Column("total_fen", sa.Integer(), nullable=False),
        sa.Column("captured_fen", sa.Integer(), nullable=False),
        sa.Column("refunded_fen", sa.Integer(), nullable=False),
        sa.Column("review_needed", sa.Boolean(), nullable=False),
        sa.Column(
            "review_reasons",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "shelf_deltas",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "captured_fen >= 0 AND captured_fen <= total_fen",
            name=op.f("ck_sales_captured_within_total"),
        ),
        sa.CheckConstraint(
            "refunded_fen >= 0 AND refunded_fen <= captured_fen",
            name=op.f("ck_sales_refunded_within_captured"),
        ),
        sa.CheckConstraint("total_fen >= 0", name=op.f("ck_sales_total_fen_non_negative")),
        sa.ForeignKeyConstraint(
            ["cabinet_id"], ["cabinets.id"], name=op.f("fk_sales_cabinet_id_cabinets")
        ),
        sa.ForeignKeyConstraint(
            ["purchase_session_id"],
            ["purchase_sessions.id"],
            name=op.f("fk_sales_purchase_session_id_purchase_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sales")),
        sa.UniqueConstraint("kiosk_id", "sale_id", name=op.f("uq_sales_kiosk_id_sale_id")),
        sa.UniqueConstraint("purchase_session_id", name=op.f("uq_sales_purchase_session_id")),
    )
    op.create_index(
        "ix_sales_cabinet_id_recorded_at", "sales", ["cabinet_id", "recorded_at"], unique=False
    )
    op.create_index("ix_sales_sale_id", "sales", ["sale_id"], unique=False)
    op.create_table(
        "sale_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sale_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("product_ref", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("product_name", sa.String(length=200), nullable=False),
        sa.Column("source_county_id", sa.Integer(), nullable=True),
        sa.Column("shelf", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_fen", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("refunded_quantity", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "amount_fen = quantity * unit_price_fen", name=op.f("ck_sale_lines_amount_is_product")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_sale_lines_quantity_positive")),
        sa.CheckConstraint(
            "refunded_quantity >= 0 AND refunded_quantity <= quantity",
            name=op.f("ck_sale_lines_refunded_quantity_range"),
        ),
        sa.CheckConstraint(
            "unit_price_fen >= 0", name=op.f("ck_sale_lines_unit_price_fen_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_sale_lines_product_id_products")
        ),
        sa.ForeignKeyConstraint(
            ["sale_pk"], ["sales.id"], name=op.f("fk_sale_lines_sale_pk_sales"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["source_county_id"],
            ["counties.id"],
            name=op.f("fk_sale_lines_source_county_id_counties"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sale_lines")),
        sa.UniqueConstraint("sale_pk", "line_no", name=op.f("uq_sale_lines_sale_pk_line_no")),
    )
    op.create_table(
        "sale_refunds",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sale_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column(
            "lines",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_sale_refunds_amount_fen_positive")),
        sa.ForeignKeyConstraint(
            ["actor_user_id"], ["users.id"], name=op.f("fk_sale_refunds_actor_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["sale_pk"], ["sales.id"], name=op.f("fk_sale_refunds_sale_pk_sales")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sale_refunds")),
        sa.UniqueConstraint("reference", name=op.f("uq_sale_refunds_reference")),
    )
    op.create_index(op.f("ix_sale_refunds_sale_pk"), "sale_refunds", ["sale_pk"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sale_refunds_sale_pk"), table_name="sale_refunds")
    op.drop_table("sale_refunds")
    op.drop_table("sale_lines")
    op.drop_index("ix_sales_sale_id", table_name="sales")
    op.drop_index("ix_sales_cabinet_id_recorded_at", table_name="sales")
    op.drop_table("sales")
    op.drop_index("uq_wallet_transactions_kind_reference", table_name="wallet_transactions")
    op.drop_index("ix_wallet_transactions_wallet_id_id", table_name="wallet_transactions")
    op.drop_index(op.f("ix_wallet_transactions_hold_id"), table_name="wallet_transactions")
    op.drop_table("wallet_transactions")
    op.drop_index(
        "uq_purchase_sessions_active_cabinet",
        table_name="purchase_sessions",
        sqlite_where=sa.text(
            "state IN ('created', 'unlock_sent', 'unlocked', 'door_open', 'settling')"
        ),
        postgresql_where=sa.text(
            "state IN ('created', 'unlock_sent', 'unlocked', 'door_open', 'settling')"
        ),
    )
    op.drop_index("ix_purchase_sessions_user_id_created_at", table_name="purchase_sessions")
    op.drop_index("ix_purchase_sessions_state_deadline_at", table_name="purchase_sessions")
    op.drop_table("purchase_sessions")
    op.drop_index("ix_kiosk_events_session_id", table_name="kiosk_events")
    op.drop_index("ix_kiosk_events_cabinet_id_at", table_name="kiosk_events")
    op.drop_table("kiosk_events")
    op.drop_index(op.f("ix_payment_holds_wallet_id"), table_name="payment_holds")
    op.drop_table("payment_holds")
    op.drop_table("wallets")
    op.drop_index(op.f("ix_dead_letters_received_at"), table_name="dead_letters")
    op.drop_table("dead_letters")
