"""The canonical store: tables, engine, migrations and queries."""

from connector.store.engine import Store, StoreError, open_store

__all__ = ["Store", "StoreError", "open_store"]
