"""catalogs, label facts, job notes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 01:33:24.731504
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "label_fact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("remote_path", sa.Text(), nullable=False),
        sa.Column("label_type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=True),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["segment.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("label_fact", schema=None) as batch_op:
        batch_op.create_index(
            "ix_label_fact_category", ["segment_id", "label_type", "category"], unique=False
        )
        batch_op.create_index("ix_label_fact_entry", ["segment_id", "remote_path"], unique=False)

    op.create_table(
        "job_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["import_job.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("job_note", schema=None) as batch_op:
        batch_op.create_index("ix_job_note_job_kind", ["job_id", "kind"], unique=False)

    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("catalog", sa.JSON(), nullable=True))

    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unlabelled", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("labels_without_object", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("finishing_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )



def downgrade() -> None:
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.drop_column("finishing_at")
        batch_op.drop_column("labels_without_object")
        batch_op.drop_column("unlabelled")

    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("catalog")

    with op.batch_alter_table("job_note", schema=None) as batch_op:
        batch_op.drop_index("ix_job_note_job_kind")

    op.drop_table("job_note")
    with op.batch_alter_table("label_fact", schema=None) as batch_op:
        batch_op.drop_index("ix_label_fact_entry")
        batch_op.drop_index("ix_label_fact_category")

    op.drop_table("label_fact")
