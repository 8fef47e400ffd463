"""Idempotency keys, leases of planning and shards, rate caps of storage configs.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _str(n: int) -> sa.types.TypeEngine:
    return sqlmodel.sql.sqltypes.AutoString(length=n)


def _time() -> sa.types.TypeEngine:
    return sqlmodel.sql.sqltypes.UTCDateTime()


def upgrade() -> None:
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", _str(255), nullable=True))
        batch_op.add_column(sa.Column("request_hash", _str(64), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", _time(), nullable=True))
        batch_op.create_unique_constraint(
            "uq_import_job_workspace_id_idempotency_key", ["workspace_id", "idempotency_key"]
        )
    with op.batch_alter_table("shard", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dispatched_at", _time(), nullable=True))
        batch_op.add_column(sa.Column("lease_owner", _str(64), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", _time(), nullable=True))
        batch_op.add_column(
            sa.Column("deliveries", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("storage_config", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_requests_per_second", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("max_bytes_per_second", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("storage_config", schema=None) as batch_op:
        batch_op.drop_column("max_bytes_per_second")
        batch_op.drop_column("max_requests_per_second")
    with op.batch_alter_table("shard", schema=None) as batch_op:
        for name in ("deliveries", "heartbeat_at", "lease_owner", "dispatched_at"):
            batch_op.drop_column(name)
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.drop_constraint("uq_import_job_workspace_id_idempotency_key", type_="unique")
        for name in ("heartbeat_at", "request_hash", "idempotency_key"):
            batch_op.drop_column(name)
