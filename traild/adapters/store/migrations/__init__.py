"""traild's Alembic migrations, run programmatically by ``traild.adapters.store.schema``."""
