"""Alembic environment: runs on the connection leadsync hands it (see store.engine)."""

from alembic import context

from connector.store.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - leadsync always passes its connection
    raise RuntimeError("run migrations through `leadsync db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
