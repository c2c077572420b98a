"""PostgreSQL: URL resolution, embedded server, pool and migrations."""

from storeflow.db.connect import Database, connect, mask_url, open_database
from storeflow.db.migrate import migrate, migration_status

__all__ = ["Database", "connect", "mask_url", "migrate", "migration_status", "open_database"]
