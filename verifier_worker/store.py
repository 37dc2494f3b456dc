"""The verifier's persistent state under ``$HOME/verifiers/<id>/``.

``state.sqlite`` (WAL) holds the Checker's small state, the few journal records that are not
per entry (holes, verified checkpoints), and the event ids, agent heads and checkpoint bodies
of :class:`~ledgerstream.verifier_worker.history.VerifierHistory`; ``history/`` holds the
entry hashes and Merkle levels as files of 32-byte hashes. One SQLite commit per save is the
commit point: the files are fsynced before it and cut back to its size at open, so a crash
anywhere loses nothing committed and a restart reads O(log n) hashes, never the whole
history. A lock file keeps a second process with the same id away.

Folders written by earlier versions (``journal.jsonl`` + ``state.json``, one journal line per
entry) are converted once, at the first start.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from ledgerstream.core.errors import ConfigError
from ledgerstream.core.process_lock import ProcessLock
from ledgerstream.core.spilled import SpillIncomplete, durable_journal, durable_records
from ledgerstream.core.verify import Checker, CheckerConfig, MemoryHistory
from ledgerstream.verifier_worker.history import SCHEMA, VerifierHistory

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON so readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, separators=(",", ":"), default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class StateStore:
    def __init__(self, folder: Path, *, fsync: bool = True) -> None:
        self.folder = folder
        self.db_path = folder / "state.sqlite"
        self.history_dir = folder / "history"
        self._fsync = fsync
        self._lock = ProcessLock(folder / "lock", "verifier process")
        self._conn: sqlite3.Connection | None = None
        self._history: VerifierHistory | None = None

    def lock(self) -> None:
        """Hold ``lock`` for the life of the process; ConfigError if another holds it."""
        self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()

    def reset(self) -> None:
        """Forget everything verified (``--reverify``)."""
        self._remove_new()
        for name in _OLD_FILES:
            (self.folder / name).unlink(missing_ok=True)

    def _remove_new(self) -> None:
        self.close()
        for name in ("state.sqlite", "state.sqlite-wal", "state.sqlite-shm"):
            (self.folder / name).unlink(missing_ok=True)
        shutil.rmtree(self.history_dir, ignore_errors=True)

    def load(self, config: CheckerConfig) -> tuple[Checker, dict[str, Any]]:
        """The checker as last saved (a fresh one if there is no state) and the worker's extras."""
        self.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / "state.json").exists():  # deleted once a conversion has committed
            return self._convert(config)
        try:
            conn = self._open()
            saved = self._meta(conn)
            self._history = VerifierHistory(conn, self.history_dir, saved["checker"]["integrated"] if saved else 0,
                                            fsync=self._fsync)
            if saved is None:
                return Checker(config, history=self._history), {}
            lines = conn.execute("SELECT line FROM journal ORDER BY id")
            checker = Checker.restore(config, saved["checker"], (json.loads(line) for (line,) in lines),
                                      history=self._history)
        except (sqlite3.Error, SpillIncomplete, ValueError, KeyError, TypeError) as exc:
            self.close()
            raise ConfigError(f"verifier state in {self.folder} is unusable: {exc} (use --reverify)") from exc
        return checker, saved.get("worker", {})

    def save(self, checker: Checker, worker: dict[str, Any], *, earlier: tuple[str, ...] = ()) -> None:
        """One transaction: the new journal records (after ``earlier`` lines), the history's new
        rows, the state. The history's files are fsynced before it commits."""
        conn, history = self._conn, self._history
        if conn is None or history is None:
            raise RuntimeError("StateStore.save before load")
        lines = [*earlier, *durable_journal(checker.drain_journal())]
        history.sync()
        conn.execute("BEGIN")
        try:
            conn.executemany("INSERT INTO journal(line) VALUES (?)", [(line,) for line in lines])
            history.write()
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?)",
                         (json.dumps({"checker": checker.export_state(), "worker": worker}, separators=(",", ":")),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        history.committed()

    def close(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open(self) -> sqlite3.Connection:
        conn = self._conn = sqlite3.connect(self.db_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = " + ("NORMAL" if self._fsync else "OFF"))
        conn.executescript(SCHEMA)
        return conn

    @staticmethod
    def _meta(conn: sqlite3.Connection) -> dict[str, Any] | None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'state'").fetchone()
        return None if row is None else json.loads(row[0])

    def _convert(self, config: CheckerConfig) -> tuple[Checker, dict[str, Any]]:
        """Read an earlier version's journal + state.json once (O(n)), write it in this layout,
        then delete the old files: later starts open the new layout in O(log n)."""
        try:
            saved = json.loads((self.folder / "state.json").read_text())
            with open(self.folder / "journal.jsonl", "rb") as fh:
                journal = [json.loads(line) for line in fh.read(int(saved["journal_bytes"])).splitlines()]
            memory = MemoryHistory()
            old = Checker.restore(config, saved["checker"], journal, history=memory)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"verifier state in {self.folder} is unusable: {exc} (use --reverify)") from exc
        log.info("converting the verifier state in %s (%d entries) to state.sqlite", self.folder, old.tree.size)
        self._remove_new()  # what an interrupted conversion left
        self._history = history = VerifierHistory(self._open(), self.history_dir, 0, fsync=self._fsync)
        memory.copy_into(history)
        checker = Checker.restore(config, old.export_state(), durable_records(journal), history=history)
        checker.graph.restore(old.graph.export())
        worker = saved.get("worker", {})
        self.save(checker, worker, earlier=tuple(durable_journal(journal)))
        for name in _OLD_FILES:
            (self.folder / name).unlink(missing_ok=True)
        return checker, worker


_OLD_FILES = ("state.json", "journal.jsonl")
