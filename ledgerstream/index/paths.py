"""Where the index keeps its files under ``$LEDGERSTREAM_HOME``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

INDEX_DIR = "index"
TILES_DIR = "tiles"
DB_FILE = "index.sqlite"
HISTORY_DIR = "history"
STATUS_FILE = "status.json"
LOCK_FILE = "lock"


@dataclass(frozen=True)
class IndexPaths:
    """``index_dir`` holds the SQLite database, the follower's lock and its status file;
    ``tiles_dir`` the C2SP tiles (served under ``/tlog/`` once the dashboard serves them)."""

    index_dir: Path
    tiles_dir: Path

    @classmethod
    def of(cls, home: Path, *, index_dir: Path | None = None, tiles_dir: Path | None = None) -> "IndexPaths":
        return cls(Path(index_dir or home / INDEX_DIR).resolve(), Path(tiles_dir or home / TILES_DIR).resolve())

    @property
    def history_dir(self) -> Path:
        """The Checker's per-entry hashes and Merkle levels (index/history.py)."""
        return self.index_dir / HISTORY_DIR

    @property
    def db(self) -> Path:
        return self.index_dir / DB_FILE

    @property
    def status(self) -> Path:
        return self.index_dir / STATUS_FILE

    @property
    def lock(self) -> Path:
        return self.index_dir / LOCK_FILE
