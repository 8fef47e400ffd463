"""Syncs (label ETags, tombstones, held deletions) and schedules.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _str(n: int) -> sa.types.TypeEngine:
    return sqlmodel.sql.sqltypes.AutoString(length=n)


def upgrade() -> None:
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("schedule_id", _str(32), nullable=True))
        for name in ("unchanged", "relabel_planned", "delete_planned", "relabelled", "deleted"):
            batch_op.add_column(
                sa.Column(name, sa.Integer(), nullable=False, server_default="0")
            )
        batch_op.add_column(sa.Column("review_reason", sa.Text(), nullable=True))
        batch_op.create_index("ix_import_job_schedule_id", ["schedule_id"], unique=False)
    with op.batch_alter_table("shard", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", _str(16), nullable=False, server_default="copy")
        )
    if op.get_bind().dialect.name == "postgresql":
        # Byte order, as providers list keys: a sync walks the ledger in listing order.
        for column in ("remote_path", "label_key"):
            op.alter_column("ledger_entry", column, type_=sa.Text(collation="C"))
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("label_etag", _str(200), nullable=True))
        batch_op.create_index("ix_ledger_label_key", ["segment_id", "label_key"], unique=False)
        batch_op.create_index("ix_ledger_job_id", ["job_id", "id"], unique=False)

    op.create_table(
        "schedule",
        sa.Column("id", _str(32), nullable=False),
        sa.Column("workspace_id", _str(32), nullable=False),
        sa.Column("name", _str(200), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("cron", _str(200), nullable=False),
        sa.Column("timezone", _str(64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_occurrence", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "name"),
    )
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.create_index("ix_schedule_workspace_id", ["workspace_id"], unique=False)
    op.create_table(
        "schedule_run",
        sa.Column("id", _str(32), nullable=False),
        sa.Column("schedule_id", _str(32), nullable=False),
        sa.Column("occurrence", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("trigger", _str(16), nullable=False),
        sa.Column("status", _str(16), nullable=False),
        sa.Column("job_id", _str(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedule.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schedule_id", "occurrence"),
    )
    with op.batch_alter_table("schedule_run", schema=None) as batch_op:
        batch_op.create_index("ix_schedule_run_schedule_id", ["schedule_id"], unique=False)


def downgrade() -> None:
    op.drop_table("schedule_run")
    op.drop_table("schedule")
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_job_id")
        batch_op.drop_index("ix_ledger_label_key")
        batch_op.drop_column("label_etag")
    with op.batch_alter_table("shard", schema=None) as batch_op:
        batch_op.drop_column("kind")
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.drop_index("ix_import_job_schedule_id")
        for name in ("review_reason", "deleted", "relabelled", "delete_planned"):
            batch_op.drop_column(name)
        for name in ("relabel_planned", "unchanged", "schedule_id"):
            batch_op.drop_column(name)
