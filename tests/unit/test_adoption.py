"""``core/adoption.py``: which record is entry N, for readers without the index.

Two oracles: the ledger built here (which records the signer wrote for each seq) and the
ledger index (``IndexCore``, the follower's own code path over the same Checker), which must
adopt exactly the same records and call exactly the same records foreign. Readers that
disagree on entry N are a security bug (issue 17), so the hostile stream below mixes what an
attacker with write access to the topic can do: replays, forks under the trusted key,
records under another key, flipped bits, garbage, a gap, and a forged record that continues
the chain exactly and arrives before the genuine one.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from ledgerstream.core import mldsa, records
from ledgerstream.core.adoption import Adoption, adopt
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.index.core import IndexCore
from ledgerstream.index.db import dump
from ledgerstream.index.paths import IndexPaths
from support.ledger_builder import LedgerBuilder, enc, entry_bytes, flip_inside, other_entry, seal

pytestmark = pytest.mark.unit

KEY = mldsa.PrivateKey.from_seed(bytes(range(7, 39)))
ROGUE = mldsa.PrivateKey.from_seed(bytes(range(50, 82)))


def hostile(mode: str) -> tuple[LedgerBuilder, list[tuple[int, bytes]], set[int], list[bytes]]:
    """(builder, entries topic records, offsets of the genuine entries, checkpoints records)."""
    b = LedgerBuilder(KEY, signing_mode=mode)
    out: list[tuple[int, bytes]] = []
    genuine: set[int] = set()

    def put(raw: bytes, real: bool = False) -> None:
        if real:
            genuine.add(len(out))
        out.append((len(out), raw))

    for i in range(6):
        put(entry_bytes(b.entry(("planner", "coder")[i % 2])), True)
    put(entry_bytes(b.entries[2]))  # a replayed copy
    put(entry_bytes(other_entry(b.entries[3], KEY)))  # a fork under the trusted key, after the fact
    put(entry_bytes(seal(dict(b.entries[4]), ROGUE, signed=mode == "entry")))  # another key (offset 8)
    put(flip_inside(entry_bytes(b.entries[1]), bytes(b.entries[1]["entry_hash"])[:32]))  # a flipped bit
    put(b"\xc3\x01 not avro at all")
    # a forged record that continues the chain exactly, written before the genuine entry 6
    ahead = b.copy()
    forged = ahead.entry("planner", action_type="data:delete:everything",
                         key=ROGUE if mode == "entry" else None)
    put(entry_bytes(forged))
    put(entry_bytes(b.entry("coder")), True)
    put(entry_bytes(b.entry("planner")), True)
    b.skip()  # entry 8 never reaches the topic: a one-entry gap
    for _ in range(3):
        put(entry_bytes(b.entry("coder")), True)
    checkpoints = [enc("Checkpoint", b.checkpoint()), enc("Checkpoint", b.checkpoint(key=ROGUE))]
    return b, out, genuine, checkpoints


@pytest.mark.parametrize("mode", ["entry", "checkpoint"])
def test_adopts_exactly_the_genuine_records_and_says_why_for_the_rest(mode: str) -> None:
    b, stream, genuine, checkpoints = hostile(mode)
    adopted: list[tuple[int, int]] = []
    run = adopt(stream, list(enumerate(checkpoints)), CheckerConfig.from_keys([KEY.public_key()]),
                lambda c: adopted.append((c.seq, c.offset)))
    assert [seq for seq, _ in adopted] == [s for s in range(12) if s != 8]  # in seq order, the gap left out
    assert {offset for _, offset in adopted} == genuine
    assert [bytes(e["entry_hash"]) for e in b.entries] == [
        records.entry_hash(e) for e in b.entries]  # the oracle itself is consistent
    foreign = {f.offset: f.kind for f in run.foreign}
    assert set(foreign) == {o for o, _ in stream} - genuine
    assert foreign[6] == "duplicate" and foreign[7] == "fork" and foreign[10] == "undecodable"
    assert foreign[8] == "unknown_key"  # it names a key nobody trusts, signed or not
    assert foreign[9] in ("hash_mismatch", "bad_signature")
    assert foreign[11] == ("unknown_key" if mode == "entry" else "fork")  # the forged continuation
    assert run.checker.tree.root() == b.tree.root()  # the gap's hash is known from its successor
    kinds = {f.kind.value for f in run.findings}
    assert {"gap", "checkpoint_bad_signature"} <= kinds
    assert [c.offset for c in run.checkpoints if c.rejection is None] == [0]


@pytest.mark.parametrize("mode", ["entry", "checkpoint"])
def test_the_index_and_the_in_memory_readers_agree_on_every_record(mode: str, tmp_path: Path) -> None:
    _, stream, _, checkpoints = hostile(mode)
    config = CheckerConfig.from_keys([KEY.public_key()])
    adopted: dict[int, int] = {}
    run = adopt(stream, list(enumerate(checkpoints)), config, lambda c: adopted.__setitem__(c.seq, c.offset))
    core = IndexCore(IndexPaths.of(tmp_path), config, fsync=False)
    core.process([("entries", o, raw) for o, raw in stream] + [("checkpoints", o, raw) for o, raw in enumerate(checkpoints)])
    rows = dump(core.conn)
    core.close()
    columns = "seq event_id event_id_reused entry_hash topic_offset".split()
    indexed = {row[0]: row[columns.index("topic_offset")] for row in rows["entries"]}
    assert indexed == adopted
    assert {row[1] for row in rows["foreign_records"] if row[0] == "entries"} == {f.offset for f in run.foreign}


def test_a_live_reader_learns_each_verdict_as_soon_as_the_core_decides() -> None:
    """The dashboard feeds one record at a time: a record the core will never adopt is
    reported at once, the newest entry waits for its successor (or a checkpoint)."""
    b, stream, genuine, checkpoints = hostile("entry")
    adopted: list[int] = []
    foreign: list[int] = []
    live = Adoption(CheckerConfig.from_keys([KEY.public_key()]), lambda c: adopted.append(c.offset),
                    on_foreign=lambda f: foreign.append(f.offset), keep=False)
    for record in stream[:7]:
        live.feed_entries([record])
    assert adopted == [0, 1, 2, 3, 4] and foreign == [6]  # entry 5 is tentative; the replay is foreign
    for record in stream[7:]:
        live.feed_entries([record])
    assert foreign == [6, 7, 8, 9, 10, 11] and adopted[-1] == 15  # the newest (offset 16) is still tentative
    live.feed_checkpoints([(0, checkpoints[0])])
    assert set(adopted) == genuine and live.findings == [] and live.foreign == []
