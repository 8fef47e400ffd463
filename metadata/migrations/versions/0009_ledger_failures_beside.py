"""Ledger entries keep their last good state when a later job fails on them (the failure is
recorded beside it: `failed_job_id` and the error), and say which check verified a copy
(`verified_by`: md5, crc64, size, ...).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failed_job_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.add_column(
            sa.Column("verified_by", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.create_index("ix_ledger_failed_job", ["failed_job_id"])


def downgrade() -> None:
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_failed_job")
        batch_op.drop_column("verified_by")
        batch_op.drop_column("failed_job_id")
