"""Results store: SQLite by default, PostgreSQL via a URL (see :mod:`.store`)."""

from .store import Store, StoreError, load_results, load_samples, open_store

__all__ = ["Store", "StoreError", "load_results", "load_samples", "open_store"]
