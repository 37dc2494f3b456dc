"""RFC 3161 anchors in the index, with real tokens from the dev TSA: a verified anchor per
checkpoint (with its genTime), a token over other bytes and an anchor of a checkpoint the
ledger does not have are ``failed`` with the Checker's finding; ``query.anchors_of``."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from ledgerstream.core import mldsa
from ledgerstream.core.timestamp import token_gen_time
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.index import query
from ledgerstream.index.core import IndexCore
from ledgerstream.index.paths import IndexPaths
from support.ledger_builder import LedgerBuilder, enc, entry_bytes, timestamp_token

pytestmark = pytest.mark.integration

KEY = mldsa.PrivateKey.from_seed(bytes(range(32)))


def test_anchors_get_their_status_and_gen_time(dev_tsa: Any, tmp_path: Path) -> None:
    b = LedgerBuilder(KEY)
    items: list[tuple[str, int, bytes]] = []
    offsets = {"entries": 0, "checkpoints": 0}

    def add(role: str, raw: bytes) -> int:
        items.append((role, offsets[role], raw))
        offsets[role] += 1
        return offsets[role] - 1

    for e in b.many(100):
        add("entries", entry_bytes(e))
    cp1 = b.checkpoint()
    add("checkpoints", enc("Checkpoint", cp1))
    token1 = timestamp_token(dev_tsa.url, cp1["body"])
    good = add("checkpoints", enc("TimestampAnchor", LedgerBuilder.anchor(cp1, token1)))
    wrong = add("checkpoints", enc("TimestampAnchor", LedgerBuilder.anchor(cp1, timestamp_token(dev_tsa.url, b"other"))))
    unknown_cp = dict(cp1, body=cp1["body"] + b"x")
    unknown = add("checkpoints", enc("TimestampAnchor", LedgerBuilder.anchor(unknown_cp, token1)))
    for e in b.many(50):
        add("entries", entry_bytes(e))
    cp2 = b.checkpoint()
    add("checkpoints", enc("Checkpoint", cp2))
    good2 = add("checkpoints", enc("TimestampAnchor", LedgerBuilder.anchor(cp2, timestamp_token(dev_tsa.url, cp2["body"]))))

    paths = IndexPaths.of(tmp_path)
    config = CheckerConfig.from_keys([KEY.public_key()], tsa_ca=Path(dev_tsa.ca_cert).read_bytes())
    # checkpoint 1 ends the first batch and its anchors start the next, with a restart between:
    # the Checker finds the checkpoint an anchor names in the index's own table, not in memory
    for start, end in ((0, 101), (101, 130), (130, len(items))):
        core = IndexCore(paths, config, fsync=False)
        core.process(items[start:end])
        core.close()

    conn = query.open_index(paths=paths)
    try:
        got = {o: (s, f) for o, s, f in conn.execute("SELECT topic_offset, status, finding FROM anchors")}
        assert got == {good: ("verified", None), wrong: ("failed", "timestamp_invalid"),
                       unknown: ("failed", "timestamp_invalid"), good2: ("verified", None)}
        first = query.checkpoint_at(conn, 100)
        anchors = query.anchors_of(conn, first)
        assert [a.topic_offset for a in anchors] == [good, wrong]
        gen = token_gen_time(token1)
        assert anchors[0].gen_time == int(gen.timestamp()) * 1_000_000 + gen.microsecond
        assert anchors[0].body_sha256 == hashlib.sha256(cp1["body"]).digest()
        assert query.latest_checkpoint(conn).tree_size == 150
    finally:
        conn.close()
