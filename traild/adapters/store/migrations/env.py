"""Alembic environment: runs only on a connection handed in by ``traild.adapters.store.schema``.

No ini file and no ``fileConfig`` (it would replace the process's logging handlers), no
``asyncio.run`` (traild runs inside trio-asyncio): the caller owns the connection and transaction.
"""

from __future__ import annotations

from alembic import context

from traild.adapters.store.models import Base
from traild.adapters.store.tables import VERSION_TABLE

_connection = context.config.attributes.get("connection")
if _connection is None or context.is_offline_mode():
    raise RuntimeError("traild's migrations run through `traild migrate`, not the alembic CLI")

context.configure(
    connection=_connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    version_table=VERSION_TABLE,
)
with context.begin_transaction():
    context.run_migrations()
