"""The Checker (core/verify/checker.py) from dangling links on: checkpoints, anchors, note
signatures, peer checkpoints and restore, on the cases its mutation run showed untested
(docs/mutation.md). Ledgers are built with tests/support/ledger_builder.py; the expected
answers come from docs/alerts.md, docs/spec.md, the Checker's docstrings, and where they are
hashes or sizes, from the builder's own chain. RFC 3161 tokens are made with `openssl ts`."""
from __future__ import annotations

import hashlib
import json
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledgerstream.core import note, records
from ledgerstream.core.verify import CHECKPOINTS, ENTRIES, Checker, CheckerConfig
from ledgerstream.stack.devtsa import TsaFiles, ensure_ca
from support.checker_cases import KEY, checked_with_gap, checker_config, feed_entries, gen_time, stamp
from support.ledger_builder import START_US, LedgerBuilder, enc, entry_bytes
from support.signed_notes import key_id

pytestmark = pytest.mark.unit

ORIGIN = "ledgerstream/test"
LOG_ED = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
W1 = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def _raw(k: Ed25519PrivateKey) -> bytes:
    return k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


LOG_VKEY = note.Verifier(ORIGIN, note.ED25519, _raw(LOG_ED))
W1_VKEY = note.Verifier("w1.example/witness", note.COSIGNATURE_V1, _raw(W1))


def config(**kw: Any) -> CheckerConfig:
    kw.setdefault("note_keys", (LOG_VKEY,))
    kw.setdefault("witnesses", (W1_VKEY,))
    kw.setdefault("witness_quorum", 1)
    return checker_config(**kw)




def restart(checker: Checker, cfg: CheckerConfig | None = None) -> Checker:
    """What a worker does across a restart: drain the journal, save state and journal (JSON), restore."""
    journal = json.loads(json.dumps(checker.drain_journal()))
    state = json.loads(json.dumps(checker.export_state()))
    return Checker.restore(cfg or config(), state, journal)


def note_record(cp: dict[str, Any], role: str, name: str, kid: bytes, signature: bytes,
                tree_size: int | None = None) -> bytes:
    return enc("NoteSignature", {"tree_size": cp["tree_size"] if tree_size is None else tree_size,
                                 "body_hash": hashlib.sha256(cp["body"]).digest(), "role": role, "name": name,
                                 "key_id": kid, "signature": signature, "created_at": cp["created_at"]})


def log_line(cp: dict[str, Any], tree_size: int | None = None) -> bytes:
    """The log's Ed25519 signed-note line over the body (c2sp.org/signed-note, key type 0x01)."""
    return note_record(cp, "log", ORIGIN, key_id(ORIGIN, b"\x01", _raw(LOG_ED)), LOG_ED.sign(cp["body"]), tree_size)


def w1_cosignature(cp: dict[str, Any], tree_size: int | None = None, t: int = 1_700_000_000) -> bytes:
    """A cosignature/v1 line (c2sp.org/tlog-cosignature): Ed25519 over the header and the body."""
    msg = b"cosignature/v1\ntime %d\n" % t + cp["body"]
    return note_record(cp, "witness", W1_VKEY.name, key_id(W1_VKEY.name, b"\x04", _raw(W1)),
                       struct.pack(">Q", t) + W1.sign(msg), tree_size)


# --- [8] dangling links ------------------------------------------------------------------------

@pytest.mark.parametrize("t0", [START_US, START_US + 0xFFFFFF, 3_000_000])
def test_a_pending_link_dangles_once_it_waited_more_than_link_grace_seconds_of_ledger_time(t0: int) -> None:
    # docs/alerts.md `link_dangling` and docs/spec.md section 3: ledger time is received_at of the
    # newest entry minus that of the linking entry; `verify --help`: the grace is the "ledger
    # time a pending link may wait for its target" (10 s here, to the microsecond; the entries
    # bound set to none). Ledger times of any origin (the builder's, one with low bits set,
    # one a few seconds after the epoch)
    b = LedgerBuilder(KEY, signing_mode="checkpoint", now_us=t0)
    checker = Checker(config(link_grace_entries=None, link_grace_seconds=10))
    linking = b.entry("agent-a", links=[("agent-x", "never")], advance_ms=0)
    assert linking["received_at"] == t0
    assert feed_entries(checker, [linking]) == []
    b.now_us = t0 + 10_000_000                     # it waited 10 s: still allowed
    assert feed_entries(checker, [b.entry("agent-b", advance_ms=0)], 1) == []
    b.now_us = t0 + 10_000_001                     # 10.000001 s: the grace has passed
    found = checker.feed(ENTRIES, 2, entry_bytes(b.entry("agent-b", advance_ms=0)))
    assert [(f.kind.value, f.seq_from, f.agent_id) for f in found] == [("link_dangling", 0, "agent-a")]
    assert checker.pending_links == 0


@pytest.mark.parametrize("restarted", [False, True])
def test_a_link_whose_target_arrives_after_it_dangled_makes_no_call_graph_edge(restarted: bool) -> None:
    # docs/spec.md section 9 step 7: "pending links resolve within the grace period"; once one
    # dangled (link_dangling) it is not resolved by a late target, live or after a restart
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    checker = Checker(config(link_grace_entries=2))
    entries = [b.entry("agent-a", links=[("agent-x", "late")])] + b.many(4, agents=("agent-b",))
    found = feed_entries(checker, entries)
    assert found == ["link_dangling"]
    if restarted:
        checker = restart(checker, config(link_grace_entries=2))
    late = [b.entry("agent-x", event_id="late"), b.entry("agent-b")]
    assert feed_entries(checker, late, 5) + [f.kind.value for f in checker.finish()] == []
    assert checker.graph.agent_pairs() == {}  # no agent-a -> agent-x call
    assert not any("g" in rec for rec in checker.drain_journal())


def test_a_link_dangling_does_not_drop_another_link_still_waiting_for_the_same_target() -> None:
    # docs/alerts.md `link_dangling` / docs/spec.md section 3: each pending link has its own grace
    # (5 entries here); entries 0 and 2 link to agent-x/late, which arrives as entry 7: the link of
    # entry 0 dangled at entry 6, the link of entry 2 is still within its grace and resolves
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    checker = Checker(config(link_grace_entries=5))
    entries = [b.entry("agent-a", links=[("agent-x", "late")]), b.entry("agent-b"),
               b.entry("agent-c", links=[("agent-x", "late")])] + b.many(4, agents=("agent-b",))
    found = checker.feed_entries([(i, entry_bytes(e)) for i, e in enumerate(entries)])
    assert [(f.kind.value, f.seq_from) for f in found] == [("link_dangling", 0)]
    later = [b.entry("agent-x", event_id="late")] + b.many(10, agents=("agent-b",))
    assert feed_entries(checker, later, 7) + [f.kind.value for f in checker.finish()] == []
    assert checker.graph.agent_pairs() == {"agent-c": {"agent-x": 1}}
    assert checker.pending_links == 0


def test_a_link_dangles_at_the_entry_its_grace_runs_out_even_behind_a_link_resolved_there() -> None:
    # docs/alerts.md `link_dangling`: a pending link dangles once link_grace_entries entries (3)
    # have passed, i.e. at entry 4 for links of entry 0 (as pending links do: oldest first, each
    # once its grace has passed); entry 0's first link resolves at that same entry (its target,
    # entry 3, is within the grace), its second link never does
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    checker = Checker(config(link_grace_entries=3))
    entries = [b.entry("agent-a", links=[("agent-x", "t"), ("agent-y", "never")]), b.entry("agent-b"),
               b.entry("agent-b"), b.entry("agent-x", event_id="t")] + b.many(3, agents=("agent-b",))
    dangling = []
    for seq, e in enumerate(entries):
        dangling += [(seq, f.seq_from, f.evidence["to_event"]) for f in checker.feed(ENTRIES, seq, entry_bytes(e))
                     if f.kind.value == "link_dangling"]
    assert dangling == [(4, 0, "never")]
    assert checker.graph.agent_pairs() == {"agent-a": {"agent-x": 1}}


# --- [6] checkpoints ---------------------------------------------------------------------------

def test_a_verified_checkpoint_s_anchor_and_note_line_still_find_it_after_a_restore() -> None:
    # restore: the journal carries the checkpoint bodies (drain_journal: "verified checkpoints");
    # an anchor or note line of a checkpoint the ledger has is no finding (docs/alerts.md
    # timestamp_invalid / checkpoint_bad_signature: only for a checkpoint it does not have)
    b = LedgerBuilder(KEY)
    entries = b.many(4)
    cp = b.checkpoint()
    checker = Checker(config())
    assert feed_entries(checker, entries) == []
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) == []
    assert checker.stats.checkpoints_verified == 1
    restored = restart(checker)
    for ch in (checker, restored):  # the live checker and the restored one answer alike
        assert ch.feed(CHECKPOINTS, 1, enc("TimestampAnchor", LedgerBuilder.anchor(cp, b"token"))) == []
        assert ch.feed(CHECKPOINTS, 2, log_line(cp)) == []
        assert ch.stats.timestamps_unverified == 1 and ch.stats.note_signatures_verified == 1


@pytest.mark.parametrize("restarted", [False, True])
def test_a_one_entry_gap_above_seq_256_keeps_checkpoints_verifiable(restarted: bool) -> None:
    # docs/alerts.md `gap`: "A one-entry gap keeps the Merkle tree exact"; only after a longer
    # gap are checkpoints covering the hole unverifiable (seqs of a real ledger are large)
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    entries = b.many(290)
    b.skip()  # seq 290
    entries += b.many(5)
    cp = b.checkpoint()
    checker = Checker(config())
    assert feed_entries(checker, entries) == ["gap"]
    if restarted:
        checker = restart(checker)
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) + checker.finish() == []
    assert (checker.stats.checkpoints_verified, checker.stats.checkpoints_unverifiable) == (1, 0)
    assert checker.last_checkpoint["tree_size"] == 296 and checker.last_checkpoint["root_hash"] == b.tree.root().hex()


@pytest.mark.parametrize("first_checkpoint", [True, False])
def test_a_checkpoint_that_ends_before_a_longer_gap_is_verified(first_checkpoint: bool) -> None:
    # docs/alerts.md `gap`: only "checkpoints covering the hole cannot be checked"; one of size 3,
    # read after the entries of a ledger whose entries 5..7 are missing, covers entries 0..2
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    entries = b.many(2)
    cp2 = b.checkpoint()
    entries += b.many(3)
    cp3, cp5 = b.checkpoint(size=3), b.checkpoint(size=5)
    for _ in range(3):
        b.skip()
    entries += b.many(2)
    checker = Checker(config())
    if not first_checkpoint:
        feed_entries(checker, entries[:2])
        assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp2)) == []
    assert feed_entries(checker, entries[checker.position:], checker.position) == ["gap"]
    assert checker.feed(CHECKPOINTS, 1, enc("Checkpoint", cp3)) == []
    assert (checker.stats.checkpoints_verified, checker.stats.checkpoints_unverifiable) == (2 - first_checkpoint, 0)
    assert checker.last_checkpoint["tree_size"] == 3
    assert checker.feed(CHECKPOINTS, 2, enc("Checkpoint", cp5)) + checker.finish() == []  # ends where the gap starts
    assert (checker.stats.checkpoints_verified, checker.stats.checkpoints_unverifiable) == (3 - first_checkpoint, 0)


@pytest.mark.parametrize("restarted", [False, True])
def test_a_checkpoint_of_the_integrated_size_leaves_the_head_tentative(restarted: bool) -> None:
    # docs/alerts.md "How incidents are counted": the newest entry stays tentative until the next
    # entry links to it, so a fork of the head followed by an entry continuing from the fork is
    # one `fork` alert; a checkpoint read in between that covers the entries before the head
    # (size 4: entries 0..3) verifies and does not settle the head (held_offsets: the tentative head)
    b = LedgerBuilder(KEY)
    entries = b.many(4)
    cp4 = b.checkpoint()
    fork_side = b.copy()
    entries.append(b.entry("agent-a"))
    fork, after = fork_side.entry("agent-z"), fork_side.entry("agent-c")
    assert fork["seq"] == entries[4]["seq"] == 4 and after["prev_hash"] == fork["entry_hash"]
    checker = Checker(config())
    assert feed_entries(checker, entries) == []
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp4)) == []
    assert checker.stats.checkpoints_verified == 1 and checker.held_offsets == {4}
    if restarted:
        checker = restart(checker)
    assert feed_entries(checker, [fork, after], 5) + [f.kind.value for f in checker.finish()] == ["fork"]
    assert checker.hash_at(4) == fork["entry_hash"] and checker.head_hash == after["entry_hash"]


@pytest.mark.parametrize("field", ["root", "head"])
@pytest.mark.parametrize("value", [bytes(32), b"\xff" * 32])
def test_a_first_checkpoint_with_another_root_or_chain_head_is_a_root_mismatch(field: str, value: bytes) -> None:
    # docs/alerts.md `checkpoint_root_mismatch`: root_hash != MTH(entries[0:tree_size]) or chain_head
    # != entry_hash of entry tree_size-1; values sorting before and after the right ones, in a body
    # signed by the trusted key; such a checkpoint is never the verified one
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    entries = b.many(5)
    good = b.checkpoint()
    root, head = (value, good["chain_head"]) if field == "root" else (good["root_hash"], value)
    body = records.checkpoint_body(b.origin, 5, root, head, good["created_at"])
    forged = dict(good, root_hash=root, chain_head=head, body=body, signature=KEY.sign(body))
    checker = Checker(config())
    feed_entries(checker, entries)
    found = checker.feed(CHECKPOINTS, 0, enc("Checkpoint", forged)) + checker.finish()
    assert [(f.kind.value, f.seq_from) for f in found] == [("checkpoint_root_mismatch", 4)]
    assert checker.stats.checkpoints_verified == 0 and checker.last_checkpoint is None
    assert checker.feed(CHECKPOINTS, 1, enc("Checkpoint", good)) == []
    assert checker.last_checkpoint["root_hash"] == b.tree.root(5).hex()


# --- [7] RFC 3161 anchors ----------------------------------------------------------------------

@pytest.mark.parametrize("delta", [1, 1000])
def test_an_anchor_naming_a_larger_tree_size_than_its_checkpoint_is_timestamp_invalid(delta: int) -> None:
    # docs/alerts.md `timestamp_invalid`: an anchor that names a different tree size
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    entries = b.many(5)
    cp = b.checkpoint()
    checker = Checker(config())
    feed_entries(checker, entries)
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) == []
    wrong = dict(LedgerBuilder.anchor(cp, b"token"), tree_size=5 + delta)
    found = checker.feed(CHECKPOINTS, 1, enc("TimestampAnchor", wrong))
    assert [f.kind.value for f in found] == ["timestamp_invalid"]
    assert found[0].evidence["checkpoint_size"] == "5"
    assert checker.stats.timestamps_unverified == 0


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> TsaFiles:
    return ensure_ca(tmp_path_factory.mktemp("tsa"))


@pytest.mark.parametrize("token_over", ["another checkpoint", "garbage"])
def test_an_anchor_whose_token_does_not_verify_over_the_body_is_timestamp_invalid(
        tsa: TsaFiles, tmp_path: Path, token_over: str) -> None:
    # docs/alerts.md `timestamp_invalid`: a token that does not verify against the TSA CA over the
    # checkpoint body (wrong data: a real token of the same TSA over another body), the checker
    # going on with the next record
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    entries = b.many(3)
    cp3 = b.checkpoint()
    entries += b.many(2)
    cp5 = b.checkpoint()
    token = stamp(tsa, cp5["body"], tmp_path) if token_over == "another checkpoint" else b"\x30\x03\x02\x01\x00"
    checker = Checker(config(tsa_ca=tsa.ca_cert.read_bytes()))
    feed_entries(checker, entries)
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp3)) == []
    found = checker.feed(CHECKPOINTS, 1, enc("TimestampAnchor", LedgerBuilder.anchor(cp3, token)))
    assert [f.kind.value for f in found] == ["timestamp_invalid"]
    assert checker.stats.timestamps_verified == 0
    assert checker.feed(CHECKPOINTS, 2, enc("Checkpoint", cp5)) + checker.finish() == []
    assert checker.stats.checkpoints_verified == 2


def test_a_token_exactly_at_the_checkpoint_time_minus_the_clock_skew_is_in_order(tsa: TsaFiles, tmp_path: Path) -> None:
    # docs/alerts.md `timestamp_out_of_order`: only a genTime *earlier* than created_at minus
    # the allowed clock skew; here the skew is chosen so that genTime is exactly that instant
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    entries = b.many(2)
    b.now_us = (int(time.time()) + 100) * 1_000_000  # a whole second, 100 s ahead of the TSA's clock
    cp = b.checkpoint()
    token = stamp(tsa, cp["body"], tmp_path)
    gen = gen_time(token, tmp_path).timestamp()
    skew = cp["created_at"] / 1e6 - gen  # exact (Sterbenz): the two are within a factor 2
    assert 0 < skew and cp["created_at"] / 1e6 - skew == gen  # the oracle's own premise
    checker = Checker(config(tsa_ca=tsa.ca_cert.read_bytes(), clock_skew_seconds=skew))
    assert feed_entries(checker, entries) == []
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) == []
    assert checker.feed(CHECKPOINTS, 1, enc("TimestampAnchor", LedgerBuilder.anchor(cp, token))) == []
    assert checker.stats.timestamps_verified == 1


def test_the_same_token_read_again_is_not_out_of_order(tsa: TsaFiles, tmp_path: Path) -> None:
    # docs/alerts.md `timestamp_out_of_order`: a genTime *earlier* than the newest seen from the
    # same TSA; an anchor published again (same token, same genTime) does not go back in time
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    entries = b.many(3)
    cp = b.checkpoint()
    anchor = enc("TimestampAnchor", LedgerBuilder.anchor(cp, stamp(tsa, cp["body"], tmp_path)))
    checker = Checker(config(tsa_ca=tsa.ca_cert.read_bytes()))
    feed_entries(checker, entries)
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) == []
    assert checker.feed(CHECKPOINTS, 1, anchor) == []
    assert checker.feed(CHECKPOINTS, 2, anchor) == []
    assert checker.stats.timestamps_verified == 2


# --- [6] note signatures -----------------------------------------------------------------------

def _checkpointed(size: int) -> tuple[Checker, dict[str, Any]]:
    """A checker fed ``size`` entries and their checkpoint (at offset 0), without findings."""
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    entries = b.many(size)
    cp = b.checkpoint()
    checker = Checker(config())
    assert feed_entries(checker, entries) == []
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) == []
    return checker, cp


@pytest.mark.parametrize("line", [log_line, w1_cosignature])
def test_a_note_line_naming_a_smaller_tree_size_than_its_checkpoint_is_a_finding(line) -> None:
    # docs/alerts.md `checkpoint_bad_signature` (role log) / `cosignature_invalid` (witness): a
    # line of a configured key must name the tree size of its checkpoint; the signature itself
    # is over the body and verifies
    checker, cp = _checkpointed(5)
    found = checker.feed(CHECKPOINTS, 1, line(cp, tree_size=4))
    kind = "checkpoint_bad_signature" if line is log_line else "cosignature_invalid"
    assert [(f.kind.value, f.evidence["reason"]) for f in found] == [(kind, "size_mismatch")]
    assert checker.stats.note_signatures_verified == checker.stats.cosignatures_verified == 0
    assert checker.stats.witnesses == {}


@pytest.mark.parametrize("line", [log_line, w1_cosignature])
def test_note_lines_over_a_checkpoint_above_256_entries_verify(line) -> None:
    # docs/alerts.md `cosignature_invalid`: a configured key's line that verifies and names the
    # tree size of its checkpoint is fine; docs/witnesses.md: the witness then counts as
    # having cosigned that size
    checker, cp = _checkpointed(300)
    assert checker.feed(CHECKPOINTS, 1, line(cp)) == []
    s = checker.stats
    if line is log_line:
        assert s.note_signatures_verified == 1
    else:
        assert s.cosignatures_verified == 1 and s.witnesses == {W1_VKEY.name: 300} and checker.witnessed_size == 300


def test_a_cosigned_empty_tree_counts_as_size_0() -> None:
    # Stats.witnesses: "witness name -> the largest checkpoint size it has a verified cosignature
    # on"; the checkpoint of the empty ledger (size 0, the empty root) cosigned is size 0
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    cp0 = b.checkpoint()
    assert cp0["tree_size"] == 0
    checker = Checker(config())
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp0)) == []
    assert checker.feed(CHECKPOINTS, 1, w1_cosignature(cp0)) == []
    assert checker.stats.cosignatures_verified == 1
    assert checker.stats.witnesses == {W1_VKEY.name: 0} and checker.witnessed_size == 0


# --- [6] peer checkpoints (split view) ---------------------------------------------------------

def _ledger(size: int = 5) -> tuple[Checker, LedgerBuilder]:
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    checker = Checker(config())
    feed_entries(checker, b.many(size))
    checker.finish()
    return checker, b


def _other_history(size: int) -> LedgerBuilder:
    other = LedgerBuilder(KEY, signing_mode="checkpoint")
    other.many(size, agents=("someone-else",))
    return other


@pytest.mark.parametrize("offset", [7, 8])
def test_a_redelivered_peer_checkpoints_record_is_skipped(offset: int) -> None:
    # the class docstring: "Records at offsets already processed are skipped, so redelivery
    # after a restart is harmless"; a split view is one finding, at odd and even offsets
    checker, _ = _ledger(5)
    split = enc("Checkpoint", _other_history(3).checkpoint())
    first = checker.feed_peer_checkpoints([(offset, split)], "mirror.checkpoints")
    assert [f.kind.value for f in first] == ["split_view"]
    assert checker.feed_peer_checkpoints([(offset, split)], "mirror.checkpoints") == []
    assert checker.stats.peer_checkpoints_checked == 1 and checker.stats.findings["split_view"] == 1
    # a batch read again after a restart: the old record is skipped, the new ones behind it are taken
    again = checker.feed_peer_checkpoints([(offset, split), (offset + 1, split)], "mirror.checkpoints")
    assert [(f.kind.value, f.evidence["peer_offset"]) for f in again] == [("split_view", str(offset + 1))]
    assert checker.stats.peer_checkpoints_checked == 2


def test_anchors_and_note_lines_on_a_peer_s_checkpoints_topic_are_no_claims() -> None:
    # check_peer_checkpoint / feed_peer_checkpoints: only a *checkpoint* our trusted key signed
    # for our origin is a claim; a copy's checkpoints topic also carries anchors and note lines
    checker, b = _ledger(5)
    other = _other_history(3)
    split = other.checkpoint()
    records = [enc("Checkpoint", split), enc("TimestampAnchor", LedgerBuilder.anchor(split, b"token")),
               log_line(split), w1_cosignature(split)]
    for i, raw in enumerate(records[1:], 1):
        assert checker.check_peer_checkpoint((i, raw), "mirror.checkpoints") == []
    assert checker.stats.peer_checkpoints_checked == 0 and checker.stats.peer_checkpoints_beyond == 0
    found = checker.feed_peer_checkpoints(list(enumerate(records)), "mirror.checkpoints")
    assert [(f.kind.value, f.evidence["peer_offset"]) for f in found] == [("split_view", "0")]
    assert checker.stats.peer_checkpoints_checked == 1
    # our own verified checkpoint sets the origin: anchors still are no claims
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", b.checkpoint())) == []
    for i, raw in enumerate(records[1:], 10):
        assert checker.check_peer_checkpoint((i, raw), "mirror.checkpoints") == []
    assert checker.stats.peer_checkpoints_checked == 1


@pytest.mark.parametrize("live", [False, True])
def test_a_peer_checkpoint_ending_before_a_gap_is_compared(live: bool) -> None:
    # docs/alerts.md `split_view`: entries 0..2 are all there (the gap is 5..6), so a peer
    # checkpoint of size 3 signed by our key with another root is a split view, one with our
    # root agrees; neither is counted as beyond this ledger
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    checker, _ = checked_with_gap(b, config())
    split = enc("Checkpoint", _other_history(3).checkpoint())
    agreeing = enc("Checkpoint", b.checkpoint(size=3))
    if live:
        found = checker.feed_peer_checkpoints([(0, split), (1, agreeing)], "mirror.checkpoints")
        assert len(checker.export_state()["peers"]) == 0  # none left waiting
    else:
        found = checker.check_peer_checkpoint((0, split), "mirror.checkpoints")
        assert checker.check_peer_checkpoint((1, agreeing), "mirror.checkpoints") == []
        assert checker.stats.peer_checkpoints_beyond == 0
    assert [(f.kind.value, f.seq_from, f.evidence["our_root"]) for f in found] == [
        ("split_view", 2, b.tree.root(3).hex())]
    assert checker.stats.peer_checkpoints_checked == 2


@pytest.mark.parametrize("peer_size", [2, 4])
def test_a_split_view_of_an_even_size_points_at_its_last_entry(peer_size: int) -> None:
    # docs/alerts.md: seq_from/seq_to of a checkpoint finding is the last entry it covers
    checker, _ = _ledger(5)
    split = enc("Checkpoint", _other_history(peer_size).checkpoint())
    found = checker.check_peer_checkpoint((3, split), "mirror.checkpoints")
    assert [(f.kind.value, f.seq_from, f.seq_to) for f in found] == [("split_view", peer_size - 1, peer_size - 1)]


def test_peer_checkpoints_records_fed_one_by_one_are_each_taken() -> None:
    # feed_peer_checkpoints: "each claim of our signer" is compared; the record after one
    # already processed is not skipped (class docstring: only offsets already processed are)
    checker, b = _ledger(5)
    agreeing = enc("Checkpoint", b.checkpoint(size=4))
    split = enc("Checkpoint", _other_history(3).checkpoint())
    assert checker.feed_peer_checkpoints([(8, agreeing)], "mirror.checkpoints") == []
    found = checker.feed_peer_checkpoints([(9, split)], "mirror.checkpoints")
    assert [(f.kind.value, f.evidence["peer_offset"]) for f in found] == [("split_view", "9")]
    assert checker.stats.peer_checkpoints_checked == 2


# --- statistics and restore --------------------------------------------------------------------

def test_the_findings_counter_counts_every_finding_by_kind() -> None:
    # docs/index.md / docs/verifiers.md: a verifier reports its findings by kind (Stats.findings,
    # carried in export_state's "stats")
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    entries = b.many(3)
    b.skip()
    entries += b.many(2)
    b.skip()
    entries += b.many(2)
    wrong = b.checkpoint(root=bytes(32))
    checker = Checker(config())
    found = [f.kind.value for f in checker.feed_entries([(i, entry_bytes(e)) for i, e in enumerate(entries)])]
    found += [f.kind.value for f in checker.feed(CHECKPOINTS, 0, enc("Checkpoint", wrong)) + checker.finish()]
    assert found == ["gap", "gap", "checkpoint_root_mismatch"]
    assert checker.stats.findings == Counter(gap=2, checkpoint_root_mismatch=1)
    assert checker.export_state()["stats"]["findings"] == {"checkpoint_root_mismatch": 1, "gap": 2}


def test_a_ledger_of_more_than_256_entries_restores() -> None:
    # restore: "Rebuild a checker from its journal and state": the journal of a 300-entry ledger
    # holds the 300 entries its state expects; the restored checker goes on like the live one
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    entries = b.many(301)
    checker = Checker(config())
    assert feed_entries(checker, entries) == []
    assert checker.tree.size == 300  # entry 300 is the tentative head
    restored = restart(checker)
    assert (restored.position, restored.tree.size, restored.head_hash) == (301, 300, b.hashes[300])
    more = b.many(2)
    cp = b.checkpoint()
    for ch in (checker, restored):
        assert feed_entries(ch, more, 301) == []
        assert ch.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) + ch.finish() == []
        assert ch.stats.checkpoints_verified == 1 and ch.last_checkpoint["tree_size"] == 303


@pytest.mark.parametrize("restarted", [False, True])
def test_a_fork_candidate_kept_across_a_restore_is_followed_when_the_chain_continues_from_it(restarted: bool) -> None:
    # docs/alerts.md "How incidents are counted": if a fork of the head arrives and the chain then
    # continues from the fork, the verifier switches to it without a second alert; restore
    # re-checks "the few records kept whole (tentative head, fork candidate, ...)"
    b = LedgerBuilder(KEY)
    entries = b.many(4)
    fork_side = b.copy()
    head = b.entry("agent-a")
    fork = fork_side.entry("agent-z")
    assert head["seq"] == fork["seq"] == 4
    checker = Checker(config())
    found = feed_entries(checker, entries + [head, fork])
    assert found == ["fork"]
    assert checker.held_offsets == {4, 5}  # the tentative head and the fork candidate
    if restarted:
        checker = restart(checker)
        assert checker.held_offsets == {4, 5}
    after = fork_side.entry("agent-a")
    assert feed_entries(checker, [after], 6) + [f.kind.value for f in checker.finish()] == []
    assert checker.position == 6 and checker.hash_at(4) == fork["entry_hash"] and checker.hash_at(5) == after["entry_hash"]
