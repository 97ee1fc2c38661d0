"""SQLAlchemy 2 storage: one SQLite file under data/ by default, PostgreSQL by URL (QLCORE_DB_URL)."""

from qlcore.store.db import connect, default_url, project_data_dir, resolve_url
from qlcore.store.tables import metadata

__all__ = ["connect", "default_url", "metadata", "project_data_dir", "resolve_url"]
