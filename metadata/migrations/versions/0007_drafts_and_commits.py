"""Drafts, commits and registered objects of the TensorBay-compatible API; dataset notes and
head commit; segment descriptions.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _str(n: int) -> sa.types.TypeEngine:
    return sqlmodel.sql.sqltypes.AutoString(length=n)


def _time() -> sa.types.TypeEngine:
    return sqlmodel.sql.sqltypes.UTCDateTime()


def upgrade() -> None:
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("head_commit_id", _str(32), nullable=True))
    with op.batch_alter_table("segment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "draft",
        sa.Column("id", _str(32), nullable=False),
        sa.Column("dataset_id", _str(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("branch_name", _str(200), nullable=False),
        sa.Column("status", _str(16), nullable=False),
        sa.Column("parent_commit_id", _str(32), nullable=True),
        sa.Column("commit_id", _str(32), nullable=True),
        sa.Column("author", _str(200), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "number"),
    )
    op.create_index(op.f("ix_draft_dataset_id"), "draft", ["dataset_id"], unique=False)
    op.create_table(
        "dataset_commit",
        sa.Column("id", _str(32), nullable=False),
        sa.Column("dataset_id", _str(32), nullable=False),
        sa.Column("draft_number", sa.Integer(), nullable=False),
        sa.Column("parent_commit_id", _str(32), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tag", _str(200), nullable=True),
        sa.Column("committer", _str(200), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_dataset_commit_dataset_id"), "dataset_commit", ["dataset_id"], unique=False
    )
    op.create_table(
        "draft_object",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", _str(32), nullable=False),
        sa.Column("draft_number", sa.Integer(), nullable=False),
        sa.Column("segment_name", _str(200), nullable=False),
        sa.Column("cloud_path", sa.Text(), nullable=False),
        sa.Column("remote_path", sa.Text(), nullable=False),
        sa.Column("name_sha256", _str(64), nullable=False),
        sa.Column("label", sa.JSON(), nullable=True),
        sa.Column("job_id", _str(32), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_draft_object_waiting",
        "draft_object",
        ["dataset_id", "draft_number", "segment_name", "job_id"],
        unique=False,
    )
    op.create_index("ix_draft_object_job", "draft_object", ["job_id", "id"], unique=False)
    op.create_index(
        "ix_draft_object_job_name", "draft_object", ["job_id", "name_sha256"], unique=False
    )
    op.create_index(
        "ux_draft_object_waiting_name",
        "draft_object",
        ["dataset_id", "draft_number", "segment_name", "name_sha256"],
        unique=True,
        postgresql_where=sa.text("job_id IS NULL"),
        sqlite_where=sa.text("job_id IS NULL"),
    )
    op.create_table(
        "draft_batch",
        sa.Column("dataset_id", _str(32), nullable=False),
        sa.Column("draft_number", sa.Integer(), nullable=False),
        sa.Column("segment_name", _str(200), nullable=False),
        sa.Column("queued", sa.Boolean(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"]),
        sa.PrimaryKeyConstraint("dataset_id", "draft_number", "segment_name"),
    )


def downgrade() -> None:
    op.drop_table("draft_batch")
    op.drop_index("ux_draft_object_waiting_name", table_name="draft_object")
    op.drop_index("ix_draft_object_job_name", table_name="draft_object")
    op.drop_index("ix_draft_object_job", table_name="draft_object")
    op.drop_index("ix_draft_object_waiting", table_name="draft_object")
    op.drop_table("draft_object")
    op.drop_index(op.f("ix_dataset_commit_dataset_id"), table_name="dataset_commit")
    op.drop_table("dataset_commit")
    op.drop_index(op.f("ix_draft_dataset_id"), table_name="draft")
    op.drop_table("draft")
    with op.batch_alter_table("segment", schema=None) as batch_op:
        batch_op.drop_column("description")
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("head_commit_id")
        batch_op.drop_column("notes")
