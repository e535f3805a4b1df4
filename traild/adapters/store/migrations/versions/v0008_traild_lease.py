"""One owner per broker account (issue #22): ``traild_lease`` and the fencing token of each
amendment record.

``traild_lease`` holds one row per broker account (the paper broker is one account; IG: the
account id): the owning traild process, its home (host and state directory), the fencing token
(one more on every change of owner) and the expiry, in seconds since the epoch on the
database's clock. ``stop_amendment.lease_token`` says under which token an amendment was
written (NULL for rows written before leases).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "traild_lease",
        sa.Column("account", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("home", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("acquired_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    with op.batch_alter_table("stop_amendment") as batch:
        batch.add_column(sa.Column("lease_token", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("stop_amendment") as batch:
        batch.drop_column("lease_token")
    op.drop_table("traild_lease")
