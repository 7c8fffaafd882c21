"""Record the door each planogram shelf is behind.

Revision ID: 0006
Revises: 0005
Created: 2026-12-05 09:35:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("planogram_shelves", schema=None) as batch_op:
        batch_op.add_column(sa.Column("door", sa.Integer(), nullable=True))
        batch_op.create_check_constraint(
            batch_op.f("ck_planogram_shelves_door_range"), "door BETWEEN 0 AND 254"
        )


def downgrade() -> None:
    with op.batch_alter_table("planogram_shelves", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_planogram_shelves_door_range"), type_="check")
        batch_op.drop_column("door")
