"""The verifier's state folder: journal + state survive a crash between the two writes,
and a second process cannot take the same folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledgerstream.core.errors import ConfigError
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import Checker, CheckerConfig
from ledgerstream.verifier_worker.store import StateStore, journal_line
from support.ledger_builder import LedgerBuilder, enc, entry_bytes

pytestmark = pytest.mark.unit

KEY = PrivateKey.from_seed(bytes(range(32)))
CONFIG = CheckerConfig.from_keys([KEY.public_key()])


def fed_checker(builder: LedgerBuilder, checker: Checker, n: int, offset: int) -> int:
    records = [(offset + i, entry_bytes(e)) for i, e in enumerate(builder.many(n))]
    assert checker.feed_entries(records) == []
    assert checker.feed_checkpoints([(offset, enc("Checkpoint", builder.checkpoint()))]) == []
    return offset + n


def test_save_load_roundtrip_and_torn_journal_tail(tmp_path: Path) -> None:
    store, builder, checker = StateStore(tmp_path), LedgerBuilder(KEY), Checker(CONFIG)
    offset = fed_checker(builder, checker, 30, 0)
    store.save(checker, {"alerts": {"gap": 2}})
    saved_root, saved_position = checker.tree.root(), checker.position
    fed_checker(builder, checker, 10, offset)
    checker.drain_journal()  # a crash after the journal append, before state.json was replaced:
    with open(store.journal_path, "ab") as fh:
        fh.write(json.dumps({"e": [30, "00" * 32]}).encode() + b"\n" + b'{"e": [31, "half a li')
    loaded, worker = StateStore(tmp_path).load(CONFIG)
    assert worker == {"alerts": {"gap": 2}}
    assert (loaded.position, loaded.tree.root()) == (saved_position, saved_root)
    assert loaded.next_offset["entries"] == 30 and loaded.last_checkpoint["tree_size"] == 30


def test_no_state_means_a_fresh_checker_and_reset_forgets(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.load(CONFIG)[0].position == 0
    checker = Checker(CONFIG)
    fed_checker(LedgerBuilder(KEY), checker, 5, 0)
    store.save(checker, {})
    assert store.load(CONFIG)[0].position == 5
    store.reset()
    assert store.load(CONFIG)[0].position == 0


def test_unusable_state_asks_for_reverify(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(Checker(CONFIG), {})
    store.state_path.write_text("{not json")
    with pytest.raises(ConfigError, match="--reverify"):
        store.load(CONFIG)


def test_one_holder_of_the_lock(tmp_path: Path) -> None:
    first, second = StateStore(tmp_path), StateStore(tmp_path)
    first.lock()
    with pytest.raises(ConfigError, match="another verifier process"):
        second.lock()
    first.unlock()
    second.lock()
    second.unlock()


def test_journal_lines_are_what_the_json_encoder_writes() -> None:
    """store.journal_line writes the usual entry record by hand: byte for byte the encoder's
    line, for agent and event ids JSON must escape too; and the journal loads back."""
    builder, checker = LedgerBuilder(KEY), Checker(CONFIG)
    agents = ("agent-a", 'quote"back\\slash', "ünï\u2028😀", "tab\tnl\n")
    entries = builder.many(12, agents=agents)
    entries.append(builder.entry("agent-b", links=[(agents[2], entries[2]["action"]["event_id"])]))
    gap = builder.many(2)[1:]  # one seq skipped: a gap record
    records = [(i, entry_bytes(e)) for i, e in enumerate(entries + gap)]
    checker.feed_entries(records)
    checker.feed_checkpoints([(0, enc("Checkpoint", builder.checkpoint()))])
    journal = checker.drain_journal()
    kinds = {next(iter(r)) for r in journal}
    assert {"e", "gap", "g", "b", "c"} <= kinds and any("as_" in r for r in journal)
    for record in journal:
        assert journal_line(record) == json.dumps(record, separators=(",", ":")) + "\n"
