"""Access keys get a name, a role (read, write, admin), an expiry, a revocation time and the
time they were last used. Keys made before keep what they could do, and managing keys:
they become "admin". Their hints, the first 7 characters, keep at most 4 of the secret.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _str(n: int) -> sa.types.TypeEngine:
    return sqlmodel.sql.sqltypes.AutoString(length=n)


def _time() -> sa.types.TypeEngine:
    return sqlmodel.sql.sqltypes.UTCDateTime()


def upgrade() -> None:
    with op.batch_alter_table("access_key", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", _str(200), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("role", _str(8), nullable=False, server_default="admin"))
        batch_op.add_column(sa.Column("expires_at", _time(), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", _time(), nullable=True))
        batch_op.add_column(sa.Column("last_used_at", _time(), nullable=True))
    # "bp_" + 4 characters of the key stays; any other key's hint keeps 4 (|| and substr
    # are SQLite's and PostgreSQL's alike).
    op.execute(
        "UPDATE access_key SET hint = substr(hint, 1, 4) || '…' WHERE hint NOT LIKE 'bp\\_%' "
        "ESCAPE '\\'"
    )


def downgrade() -> None:
    with op.batch_alter_table("access_key", schema=None) as batch_op:
        for name in ("last_used_at", "revoked_at", "expires_at", "role", "name"):
            batch_op.drop_column(name)
