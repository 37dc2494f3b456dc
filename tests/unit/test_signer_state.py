"""signer_worker.state recovery: rebuilding from what is committed, never adopting foreign
records (a replayed copy, a flipped bit, garbage, an entry forged by another key), and
continuing the real chain afterwards. Pure: the 'topics' are lists of (offset, bytes).
Each test runs twice: entries read by the compiled reader, and by the reference decoder."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from ledgerstream.core import records
from ledgerstream.core.wire import avro_fast, codec
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.signer_worker.sequencer import Sequencer, Source
from ledgerstream.signer_worker.state import LedgerState
from support.actions import make_action

pytestmark = pytest.mark.unit


@pytest.fixture(params=["compiled", "reference"])
def entry_reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Recovery reads entries with avro_fast.read_entry when it applies, else codec.decode:
    the same rules must hold either way. With "compiled", the compiled reader must have read
    some entries (else this run tested the reference path twice)."""
    if request.param == "reference":
        monkeypatch.setattr(avro_fast, "_active", False)
        yield request.param
        return
    if not avro_fast.compiled():
        pytest.skip("the compiled entry reader is not built")
    real, read = avro_fast.read_entry, []
    monkeypatch.setattr(avro_fast, "read_entry", lambda raw: read.append(real(raw)) or read[-1])
    yield request.param
    assert any(r is not None for r in read)


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture(scope="module")
def rogue() -> PrivateKey:
    return PrivateKey.generate()


def _chain(key: PrivateKey, n: int, *, signing_mode: str = "entry") -> tuple[Sequencer, list[dict]]:
    seq = Sequencer(LedgerState(), key, signing_mode=signing_mode)
    entries = []
    for i in range(n):
        agent = ["a", "b", "c"][i % 3]
        links = ([{"agent_id": "a", "event_id": entries[0]["action"]["event_id"], "relation": "caused_by"}]
                 if i == 7 else [])
        out = seq.process(codec.encode("ActionEvent", make_action(agent_id=agent, payload={"i": i}, links=links)),
                          Source("t.actions", i % 2, i))
        entries.append(out.entry)
    return seq, entries


def _view(st: LedgerState) -> tuple:
    return (st.next_seq, st.head, dict(st.agents), st.tree.size, st.tree.root(),
            st.events.knowns())


def _forge(entry: dict[str, Any], signer: PrivateKey, *, claim_key_id: str | None = None) -> dict[str, Any]:
    """An entry that continues the chain at ``entry``'s position with a different action,
    hashed correctly and signed by ``signer`` (naming ``claim_key_id`` if given)."""
    forged = dict(entry, action=make_action(agent_id=entry["action"]["agent_id"], action_type="data:delete:users"),
                  key_id=claim_key_id or signer.public_key().key_id)
    forged["entry_hash"] = records.entry_hash(forged)
    forged["signature"] = signer.sign(records.entry_signing_message(forged["entry_hash"]))
    return forged


def _flip(raw: bytes, position: int) -> bytes:
    b = bytearray(raw)
    b[position] ^= 0x04
    return bytes(b)


def test_clean_recovery_rebuilds_the_same_state(key: PrivateKey, entry_reader: str) -> None:
    seq, entries = _chain(key, 12)
    st = LedgerState()
    st.recover(((i, codec.encode("LedgerEntry", e)) for i, e in enumerate(entries)), [], key.public_key())
    assert _view(st) == _view(seq.state) and st.skipped_on_recovery == 0


def test_recovery_skips_foreign_records_and_continues_the_real_chain(key: PrivateKey, rogue: PrivateKey,
                                                                     entry_reader: str) -> None:
    seq, entries = _chain(key, 20)
    raws = [codec.encode("LedgerEntry", e) for e in entries]
    foreign = {
        5: [raws[2]],                                           # a replayed copy of an earlier entry
        9: [_flip(raws[9], len(raws[9]) // 2),                  # the next entry with a flipped bit ...
            _flip(raws[9], 40)],
        12: [b"\xc3\x01garbage", codec.encode("Checkpoint", {  # undecodable, and the wrong record type
            "spec_version": 1, "origin": "o", "tree_size": 0, "root_hash": bytes(32), "chain_head": bytes(32),
            "created_at": 0, "body": b"", "key_id": "x", "signature": b""})],
        15: [codec.encode("LedgerEntry", _forge(entries[15], rogue)),                       # another key
             codec.encode("LedgerEntry", _forge(entries[15], rogue, claim_key_id=key.public_key().key_id))],
        # the real entry's hash and signature over an altered action: only a recomputed hash tells
        17: [codec.encode("LedgerEntry", dict(entries[17], action=dict(entries[17]["action"],
                                                                       action_type="data:delete:users")))],
    }
    stream, offset = [], 0
    for i, raw in enumerate(raws):
        for bad in foreign.get(i, []):
            stream.append((offset, bad))
            offset += 1
        stream.append((offset, raw))
        offset += 1
    stream.append((offset, raws[19]))  # and a duplicate of the head at the very end

    st = LedgerState()
    st.recover(iter(stream), [], key.public_key())
    assert st.skipped_on_recovery == 9
    assert _view(st) == _view(seq.state)

    # the recovered signer continues the real chain: seq 20 after the real head
    resumed = Sequencer(st, key)
    nxt = resumed.process(codec.encode("ActionEvent", make_action(agent_id="b")), Source("t.actions", 0, 99)).entry
    original = seq.process(codec.encode("ActionEvent", make_action(agent_id="b")), Source("t.actions", 0, 99)).entry
    assert nxt["seq"] == 20 and nxt["prev_hash"] == entries[19]["entry_hash"]
    assert (nxt["agent_seq"], nxt["agent_prev_hash"]) == (original["agent_seq"], original["agent_prev_hash"])
    # and the dedup index came back too: replaying a recorded action is a duplicate
    assert resumed.process(codec.encode("ActionEvent", entries[4]["action"]),
                           Source("t.actions", 0, 100)).duplicate_of == 4


def test_an_entry_that_breaks_the_chain_ends_adoption(key: PrivateKey, entry_reader: str) -> None:
    """After a gap nothing further continues our chain (verifiers alert on such a topic;
    the signer must not build on it), so recovery stops at the last good entry."""
    _, entries = _chain(key, 8)
    stream = [(i, codec.encode("LedgerEntry", e)) for i, e in enumerate(entries) if i != 4]
    st = LedgerState()
    st.recover(iter(stream), [], key.public_key())
    assert st.next_seq == 4 and st.head == entries[3]["entry_hash"] and st.skipped_on_recovery == 3


def test_recovery_of_unsigned_checkpoint_mode_entries(key: PrivateKey, rogue: PrivateKey, entry_reader: str) -> None:
    seq, entries = _chain(key, 6, signing_mode="checkpoint")
    forged = _forge(entries[3], rogue)  # names the rogue key: not ours, skipped
    stream = [codec.encode("LedgerEntry", e) for e in entries[:3]] + [codec.encode("LedgerEntry", forged)] + \
        [codec.encode("LedgerEntry", e) for e in entries[3:]]
    st = LedgerState()
    st.recover(enumerate(stream), [], key.public_key())
    assert _view(st) == _view(seq.state) and st.skipped_on_recovery == 1


def _root(entries: list[dict], size: int) -> bytes:
    """MTH of the first ``size`` entries, by RFC 9162's recursive definition (not our tree)."""
    from support import rfc9162_checker as rfc9162

    return rfc9162.mth_from_leaf_hashes([rfc9162.hash_leaf(records.merkle_leaf_input(e["entry_hash"]))
                                         for e in entries[:size]])


def _checkpoint(key: PrivateKey, entries: list[dict], size: int, *, root: bytes | None = None) -> dict[str, Any]:
    root = _root(entries, size) if root is None else root
    head = records.ZERO_HASH  # recovery checks the signature and the root, not the head line
    body = records.checkpoint_body("ledgerstream/dev", size, root, head, 1000 + size)
    return {"spec_version": 1, "origin": "ledgerstream/dev", "tree_size": size, "root_hash": root,
            "chain_head": head, "created_at": 1000 + size, "body": body,
            "key_id": key.public_key().key_id, "signature": key.sign(body)}


def _anchor(cp: dict[str, Any]) -> dict[str, Any]:
    return {"tree_size": cp["tree_size"], "body_hash": records.sha256(cp["body"]),
            "timestamp": {"tsa": "http://tsa", "token": b"\x30\x00"}, "created_at": 0}


def test_checkpoint_recovery_finds_the_last_and_the_unanchored(key: PrivateKey, rogue: PrivateKey,
                                                               entry_reader: str) -> None:
    seq, entries = _chain(key, 10)
    good0, good4, good8, good10 = (_checkpoint(key, entries, n) for n in (0, 4, 8, 10))
    bad_root = _checkpoint(key, entries, 9, root=bytes(32))
    by_rogue = dict(_checkpoint(rogue, entries, 9), key_id=key.public_key().key_id)
    beyond = _checkpoint(key, entries, 10)
    beyond = dict(beyond, tree_size=11)  # claims more than the ledger holds
    stream = [("Checkpoint", good0), ("Checkpoint", good4), ("TimestampAnchor", _anchor(good4)),
              ("Checkpoint", good8), ("Checkpoint", bad_root), ("Checkpoint", by_rogue), ("Checkpoint", beyond),
              ("TimestampAnchor", _anchor(good10)), ("Checkpoint", good10)]  # an anchor may come first
    st = LedgerState()
    st.recover([(i, codec.encode("LedgerEntry", e)) for i, e in enumerate(entries)],
               [(i, codec.encode(name, rec)) for i, (name, rec) in enumerate(stream)], key.public_key())
    assert _view(st) == _view(seq.state)
    assert st.checkpoint_size == 10
    assert st.unanchored == {0: good0["body"], 8: good8["body"]}


def test_a_checkpoint_whose_root_matches_no_prefix_is_not_adopted(key: PrivateKey, entry_reader: str) -> None:
    """The largest validly signed checkpoint names a root of other entries: recovery falls back
    to the last one that matches (and never treats the bad one as anchored work)."""
    _, entries = _chain(key, 6)
    good3 = _checkpoint(key, entries, 3)
    wrong6 = _checkpoint(key, entries, 6, root=_root(entries, 5))
    st = LedgerState()
    st.recover([(i, codec.encode("LedgerEntry", e)) for i, e in enumerate(entries)],
               [(0, codec.encode("Checkpoint", good3)), (1, codec.encode("Checkpoint", wrong6))], key.public_key())
    assert st.checkpoint_size == 3 and st.unanchored == {3: good3["body"]}


def test_the_signer_keeps_a_compact_range_not_every_leaf(key: PrivateKey) -> None:
    """Bounded memory (issue 18): after n entries the Merkle state is popcount(n) hashes."""
    seq, entries = _chain(key, 13)
    assert seq.state.tree.size == 13 and len(seq.state.tree.hashes) == 3  # 13 = 8 + 4 + 1
    assert seq.state.tree.root() == _root(entries, 13)
