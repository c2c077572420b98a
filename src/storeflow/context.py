"""Per-command state: the settings (loaded once, logging set up) and the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from storeflow.db.connect import Database, open_database
from storeflow.logs import setup_logging
from storeflow.settings import Settings, load_settings


@dataclass
class AppContext:
    config_path: Path | None = None
    log_level: str | None = None
    _settings: Settings | None = field(default=None, repr=False)
    _db: Database | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            settings = load_settings(self.config_path)
            if self.log_level:
                settings.LOG_LEVEL = self.log_level.upper()
            setup_logging(
                settings.LOG_DIRECTORY,
                settings.LOG_LEVEL,
                json_logs=settings.STOREFLOW_LOG_JSON,
                secrets=settings.secret_values(),
            )
            self._settings = settings
        return self._settings

    def database(self, migrate: bool = True) -> Database:
        """The database (embedded when DATABASE_URL is unset), migrated unless told not to."""
        if self._db is None:
            self._db = open_database(self.settings, migrate=migrate)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def get_context(ctx: typer.Context) -> AppContext:
    """The AppContext of this invocation (created by the root callback)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj
