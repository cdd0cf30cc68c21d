"""Storage: one `Store` protocol of domain verbs, a backend per database, chosen by URL."""

from __future__ import annotations

from headwater.errors import ConfigurationError
from headwater.store.base import EventQuery, EventRecord, Store

__all__ = ["EventQuery", "EventRecord", "Store", "open_store"]


def open_store(url: str) -> Store:
    """The backend for `url` (`sqlite:///path.db` or `postgresql://...`), not yet opened.

    Each dialect is imported only when chosen, so a SQLite deployment never imports psycopg.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from headwater.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in {"postgres", "postgresql"}:
        from headwater.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigurationError(
        f"unsupported database URL {url!r}: use sqlite:///path/to/file.db or postgresql://..."
    )
