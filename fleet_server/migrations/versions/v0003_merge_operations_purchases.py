"""Join the operations and the purchases branches of the schema.

Revision ID: 0003
Revises: 0002_operations, 0002_purchases
"""

from collections.abc import Sequence

revision: str = "0003"
down_revision: str | Sequence[str] | None = ("0002_operations", "0002_purchases")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: both branches are applied, in either order."""


def downgrade() -> None:
    """Nothing to change."""
