"""index/db.py's pieces for the follower's writer thread (decision D50): rows inserted in one
SQLite step from a staged in-memory database (decision D51), and WAL checkpoints on a thread
of their own.

Oracle for the staged insert: SQLite's own parameter binding (``executemany`` of the same
rows into a twin table); the rows must come out identical, value and storage class."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerstream.index import db

pytestmark = pytest.mark.unit

WIDTH = 5
VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1),
    st.text(max_size=40),                                   # any code point but surrogates: U+0000 too
    st.text(alphabet="\x00a\u00e9\U0001f600", max_size=6),  # NUL-heavy text
    st.binary(max_size=40),                                  # empty blobs too
)


def _twins() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    db.attach_stage(conn)
    for table in ("bound", "staged"):
        conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, {', '.join(f'c{i} ANY' for i in range(WIDTH))})"
                     " STRICT")
    return conn


def _dump(conn: sqlite3.Connection, table: str) -> list[tuple]:
    types = ", ".join(f"typeof(c{i})" for i in range(WIDTH))
    return conn.execute(f"SELECT *, {types} FROM {table} ORDER BY id").fetchall()  # noqa: S608 - fixed names


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.tuples(*[VALUES] * WIDTH), max_size=30))
def test_a_staged_insert_stores_what_executemany_binds(rows: list[tuple]) -> None:
    conn = _twins()
    numbered = [(i, *row) for i, row in enumerate(rows)]
    conn.executemany(f"INSERT INTO bound VALUES ({', '.join('?' * (WIDTH + 1))})", numbered)
    db.load_staged(conn, db.staged_rows(numbered, WIDTH + 1))
    conn.execute("INSERT INTO staged " + db.staged_select(WIDTH + 1))
    assert _dump(conn, "staged") == _dump(conn, "bound")


def test_a_staged_insert_keeps_text_after_a_nul_and_row_order_and_each_load_replaces_the_last() -> None:
    conn = _twins()
    rows = [(2, "a\x00b", b"", None, 7, "\U0001f600"), (1, "x", b"\x00\x01", -1, None, "")]
    db.load_staged(conn, db.staged_rows([(9, "old", None, None, None, None)], WIDTH + 1))
    db.load_staged(conn, db.staged_rows(rows, WIDTH + 1))
    conn.execute("INSERT INTO staged " + db.staged_select(WIDTH + 1))
    assert conn.execute("SELECT * FROM staged ORDER BY rowid").fetchall() == sorted(rows)
    assert conn.execute("SELECT c0 FROM staged WHERE c0 = ?", ("a\x00b",)).fetchone() == ("a\x00b",)
    db.load_staged(conn, db.staged_rows([], WIDTH + 1))
    assert conn.execute(db.staged_select(WIDTH + 1)).fetchall() == []


def test_the_wal_checkpointer_copies_the_wal_into_the_database_when_kicked(tmp_path: Path) -> None:
    """The writer's own automatic checkpoint is moved to a backstop far away; a kick has the
    checkpointer thread copy the WAL's pages into the database file."""
    path = tmp_path / "index.sqlite"
    conn = db.open_db(path)
    checkpointer = db.WalCheckpointer(path, conn)
    try:
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (db.WAL_BACKSTOP_PAGES,)
        conn.execute("CREATE TABLE big (v BLOB)")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO big VALUES (?)", [(bytes([i % 256]) * 3000,) for i in range(2000)])
        conn.execute("COMMIT")
        before = path.stat().st_size
        assert Path(f"{path}-wal").stat().st_size > 5_000_000 > before  # committed, still in the WAL only
        checkpointer.kick()
        deadline = time.monotonic() + 30
        while path.stat().st_size < 5_000_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert path.stat().st_size >= 5_000_000
    finally:
        checkpointer.close()
        conn.close()
    assert not checkpointer._thread.is_alive()
