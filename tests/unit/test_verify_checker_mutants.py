"""The Checker (core/verify/checker.py) on the cases its mutation run showed untested
(docs/mutation.md). Ledgers are built with tests/support/ledger_builder.py (records, hashes
and signatures as the signer makes them); the expected answers come from the Checker's
docstrings and docs/alerts.md, and where they are hashes, from the builder's own chain."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from ledgerstream.core import records
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import CHECKPOINTS, ENTRIES, Checker
from ledgerstream.stack.devtsa import TsaFiles, ensure_ca
from support.checker_cases import (KEY, checked_with_gap, checker_config, feed_entries, gen_time, own_and_other,
                                   stamp)
from support.ledger_builder import LedgerBuilder, enc, entry_bytes

pytestmark = pytest.mark.unit

config = checker_config


@pytest.mark.parametrize("n", [1, 2, 5])
def test_head_hash_is_the_newest_verified_entry_hash_before_and_after_it_is_integrated(n: int) -> None:
    b = LedgerBuilder(KEY)
    checker = Checker(config())
    assert checker.head_hash == records.ZERO_HASH  # "zeros before the first"
    entries = b.many(n)
    assert feed_entries(checker, entries) == []
    assert checker.head_hash == b.hashes[-1]          # the newest, still tentative
    assert [f.kind.value for f in checker.finish()] == []
    assert checker.position == n and checker.tree.size == n
    assert checker.head_hash == b.hashes[-1]          # integrated now: read from the history


@pytest.mark.parametrize("missing", [1, 2, 300])
def test_a_gap_finding_spans_exactly_the_missing_seqs(missing: int) -> None:
    # docs/alerts.md `gap`: "The missing range is seq_from..seq_to"
    b = LedgerBuilder(KEY)
    before = b.many(3)
    for _ in range(missing):
        b.skip()
    after = b.entry("agent-a")
    checker = Checker(config())
    feed_entries(checker, before)
    found = checker.feed(ENTRIES, 3, entry_bytes(after))
    assert [f.kind.value for f in found] == ["gap"]
    assert (found[0].seq_from, found[0].seq_to) == (3, 3 + missing - 1)
    assert found[0].evidence["missing"] == str(missing)
    assert checker.position == 3 + missing + 1


def test_an_agent_seq_that_jumps_without_a_gap_is_an_agent_chain_break() -> None:
    # docs/alerts.md `agent_chain_break`: agent_seq is not the previous agent_seq + 1
    b = LedgerBuilder(KEY)
    entries = b.many(4, agents=("agent-a",))
    entries.append(b.entry("agent-a", mutate=lambda e: e.update(agent_seq=e["agent_seq"] + 1)))
    checker = Checker(config())
    found = checker.feed_entries([(i, entry_bytes(e)) for i, e in enumerate(entries)])
    assert [f.kind.value for f in found] == ["agent_chain_break"]
    assert found[0].seq_from == 4 and found[0].evidence["expected_agent_seq"] == "4"
    assert found[0].evidence["got_agent_seq"] == "5"


def test_an_agent_seq_jump_that_a_reported_gap_explains_is_no_agent_chain_break() -> None:
    # "Not raised when a reported gap explains the jump": agent-a's entry 2 is missing
    b = LedgerBuilder(KEY)
    entries = b.many(2, agents=("agent-a",))
    b.entry("agent-a")
    b.entries.pop()  # sequenced, never published
    entries.append(b.entry("agent-a"))
    checker = Checker(config())
    found = checker.feed_entries([(i, entry_bytes(e)) for i, e in enumerate(entries)])
    assert [f.kind.value for f in found] == ["gap"]


def test_a_journal_that_holds_more_entries_than_the_state_is_refused() -> None:
    # export_state: "Valid together with every journal record drained so far": a state and a
    # journal of different sizes are not one checker's, whichever is ahead
    b = LedgerBuilder(KEY)
    checker = Checker(config())
    feed_entries(checker, b.many(5))
    checker.finish()
    journal = checker.drain_journal()
    state = checker.export_state()
    more = b.many(3)
    feed_entries(checker, more, first_offset=5)
    checker.finish()
    longer = journal + checker.drain_journal()
    assert Checker.restore(config(), state, journal).position == 5
    with pytest.raises(ValueError, match="journal holds 8 entries, state expects 5"):
        Checker.restore(config(), state, longer)
    with pytest.raises(ValueError, match="journal holds 5 entries, state expects 8"):
        Checker.restore(config(), checker.export_state(), journal)


def _split_view_setup(size: int = 5, peer_size: int = 3) -> tuple[Checker, dict[str, Any], LedgerBuilder]:
    """This ledger (``size`` entries, read to the end) and a checkpoint our signer made of
    another history of ``peer_size`` entries for the same origin."""
    b = LedgerBuilder(KEY)
    checker = Checker(config())
    feed_entries(checker, b.many(size))
    checker.finish()
    other = LedgerBuilder(KEY)
    other.many(peer_size, agents=("someone-else",))
    return checker, other.checkpoint(), b


@pytest.mark.parametrize("peer_size", [1, 3, 5])
def test_a_split_view_points_at_the_last_entry_its_checkpoint_covers(peer_size: int) -> None:
    # docs/alerts.md: seq_from/seq_to of a checkpoint finding is the last entry it covers
    checker, split, _ = _split_view_setup(5, peer_size)
    found = checker.check_peer_checkpoint((7, enc("Checkpoint", split)), "mirror.checkpoints")
    assert [f.kind.value for f in found] == ["split_view"]
    assert (found[0].seq_from, found[0].seq_to) == (peer_size - 1, peer_size - 1)
    assert found[0].evidence["tree_size"] == str(peer_size) and found[0].evidence["peer_offset"] == "7"


def test_a_live_verifier_holds_up_to_10000_peer_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    # docs/alerts.md `split_view`: it "holds each claim, up to 10,000, until its own ledger
    # reaches that size"; checked here with the bound lowered to 3 (the module reads it at run time)
    from ledgerstream.core.verify import checker as checker_module
    assert checker_module.MAX_PEER_PENDING == 10_000
    monkeypatch.setattr(checker_module, "MAX_PEER_PENDING", 3)
    checker, _, _ = _split_view_setup(2, 0)
    other = LedgerBuilder(KEY)
    other.many(9, agents=("someone-else",))
    beyond = enc("Checkpoint", other.checkpoint())  # size 9: beyond this ledger of 2
    assert checker.feed_peer_checkpoints([(i, beyond) for i in range(3)], "mirror.checkpoints") == []
    assert checker.stats.peer_checkpoints_dropped == 0 and len(checker.export_state()["peers"]) == 3
    assert checker.feed_peer_checkpoints([(3, beyond)], "mirror.checkpoints") == []
    assert checker.stats.peer_checkpoints_dropped == 1
    assert [p[0] for p in checker.export_state()["peers"]] == [1, 2, 3]  # the oldest claim went


def test_pending_links_dangle_oldest_first_each_once_its_grace_has_passed() -> None:
    # docs/alerts.md `link_dangling`: a pending link whose target has not appeared once
    # link_grace_entries entries have passed (here 5; ledger time not used)
    b = LedgerBuilder(KEY)
    checker = Checker(config(link_grace_entries=5))
    dangling: list[tuple[int, int]] = []  # (seq of the entry that made it dangle, seq of the link)
    for seq in range(12):
        links = [("agent-x", f"never-{seq}")] if seq in (1, 3) else []
        e = b.entry("agent-a", links=links)
        for f in checker.feed(ENTRIES, seq, entry_bytes(e)):
            assert f.kind.value == "link_dangling"
            dangling.append((seq, f.seq_from))
    # link of entry 1: 7 - 1 > 5 first at entry 7; link of entry 3: at entry 9
    assert dangling == [(7, 1), (9, 3)]


# --- RFC 3161 anchors, with tokens from `openssl ts -reply` and the dev TSA's configuration ---

@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> TsaFiles:
    return ensure_ca(tmp_path_factory.mktemp("tsa"))


@pytest.mark.parametrize("created_after_now, found", [(-3600, []), (200, []), (3600, ["timestamp_out_of_order"])])
def test_a_token_may_predate_its_checkpoint_by_the_clock_skew_only(tsa: TsaFiles, tmp_path: Path,
                                                                    created_after_now: int, found: list[str]) -> None:
    # docs/alerts.md `timestamp_out_of_order`: a genTime earlier than the checkpoint's
    # created_at minus the allowed clock skew (default 300 s)
    b = LedgerBuilder(KEY, now_us=int((time.time() + created_after_now) * 1e6))
    entries = b.many(3)
    cp = b.checkpoint()
    token = stamp(tsa, cp["body"], tmp_path)  # genTime: now
    checker = Checker(config(tsa_ca=tsa.ca_cert.read_bytes()))
    assert feed_entries(checker, entries) == []
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) == []
    got = checker.feed(CHECKPOINTS, 1, enc("TimestampAnchor", LedgerBuilder.anchor(cp, token)))
    assert [f.kind.value for f in got] == found
    assert checker.stats.timestamps_verified == 1


def test_a_token_earlier_than_its_checkpoint_by_a_fraction_of_a_second_is_out_of_order(tsa: TsaFiles,
                                                                                      tmp_path: Path) -> None:
    # no clock skew allowed: a genTime 0.2-0.9 s before created_at, in the same whole second,
    # predates the checkpoint (created_at is in microseconds, compared exactly)
    while time.time() % 1 > 0.6:  # leave the stamp time to land in this second
        time.sleep(0.05)
    second = int(time.time())
    b = LedgerBuilder(KEY)
    entries = b.many(2)
    b.now_us = second * 1_000_000 + 999_000
    cp = b.checkpoint()
    token = stamp(tsa, cp["body"], tmp_path)
    gen = gen_time(token, tmp_path)
    assert int(gen.timestamp()) == second and gen.timestamp() < second + 0.999  # the oracle's own premise
    checker = Checker(config(tsa_ca=tsa.ca_cert.read_bytes(), clock_skew_seconds=0.0))
    assert feed_entries(checker, entries) == []
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) == []
    got = checker.feed(CHECKPOINTS, 1, enc("TimestampAnchor", LedgerBuilder.anchor(cp, token)))
    assert [f.kind.value for f in got] == ["timestamp_out_of_order"]


@pytest.mark.parametrize("claimed", [6, 8, 300])
def test_a_checkpoint_beyond_the_ledger_points_from_the_first_missing_to_its_last_entry(claimed: int) -> None:
    # docs/alerts.md: for checkpoints seq_to is the last entry the checkpoint covers; the
    # entries it claims beyond the ledger start at the ledger's size
    b = LedgerBuilder(KEY)
    entries = b.many(claimed)
    cp = b.checkpoint()
    checker = Checker(config())
    feed_entries(checker, entries[:5])
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) == []  # waits for its entries
    found = checker.finish()
    assert [f.kind.value for f in found] == ["checkpoint_root_mismatch"]
    assert (found[0].seq_from, found[0].seq_to) == (5, claimed - 1)
    assert found[0].evidence["tree_size"] == str(claimed) and found[0].evidence["ledger_size"] == "5"


def test_the_topic_is_named_by_value() -> None:
    # feed(topic, ...): "entries" or "checkpoints", however the caller came by the string
    b = LedgerBuilder(KEY)
    entries = b.many(2)
    cp = b.checkpoint()
    checker = Checker(config())
    for i, e in enumerate(entries):
        assert checker.feed("".join(["entr", "ies"]), i, entry_bytes(e)) == []
    assert checker.feed("".join(["check", "points"]), 0, enc("Checkpoint", cp)) == []
    assert checker.finish() == [] and checker.stats.checkpoints_verified == 1
    with pytest.raises(ValueError, match="unknown topic role"):
        checker.feed("alerts", 0, b"")


def test_expire_checkpoints_settles_only_those_read_below_the_offset_given() -> None:
    # expire_checkpoints: "those still waiting for entries" among "the checkpoints at offsets
    # below before_offset"; later ones stay pending
    b = LedgerBuilder(KEY)
    entries = b.many(8)
    first, second = b.checkpoint(size=6), b.checkpoint(size=8)
    checker = Checker(config())
    feed_entries(checker, entries[:4])
    checker.feed(CHECKPOINTS, 300, enc("Checkpoint", first))
    checker.feed(CHECKPOINTS, 302, enc("Checkpoint", second))
    # offsets built at run time, as a consumer's are: `<` mutated to `is not`-style identity tests fail on them
    found = checker.expire_checkpoints(int("301"))
    assert [(f.kind.value, f.evidence["offset"]) for f in found] == [("checkpoint_root_mismatch", "300")]
    assert checker.expire_checkpoints(int("302")) == []  # 302 is not below 302
    assert [(f.kind.value, f.evidence["offset"]) for f in checker.expire_checkpoints(303)] == [
        ("checkpoint_root_mismatch", "302")]


def test_a_link_answer_of_an_unknown_status_is_a_link_mismatch() -> None:
    # docs/spec.md section 3: a resolved_links item's status is "resolved" or "pending"
    b = LedgerBuilder(KEY)
    entries = b.many(2)
    def unknown(e: dict[str, Any]) -> None:
        e["resolved_links"][0]["status"] = "unresolved"
    entries.append(b.entry("agent-a", links=[("agent-b", entries[1]["action"]["event_id"])], mutate=unknown))
    checker = Checker(config())
    found = feed_entries(checker, entries) + [f.kind.value for f in checker.finish()]
    assert found == ["link_mismatch"]


@pytest.mark.parametrize("version", [0, 2, None])
def test_a_state_of_another_version_is_refused(version: int | None) -> None:
    checker = Checker(config())
    state = checker.export_state()
    assert state["version"] == 1
    state["version"] = version
    with pytest.raises(ValueError, match="verifier state version"):
        Checker.restore(config(), state, checker.drain_journal())


def test_a_checkpoint_waiting_for_its_entries_survives_a_restore() -> None:
    # restore re-checks "the few records kept whole (tentative head, fork candidate, queued checkpoints)"
    b = LedgerBuilder(KEY)
    entries = b.many(6)
    cp = b.checkpoint()
    checker = Checker(config())
    feed_entries(checker, entries[:3])
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) == []  # waits for entries 3..5
    restored = Checker.restore(config(), checker.export_state(), checker.drain_journal())
    assert feed_entries(restored, entries[3:], first_offset=3) == []
    assert restored.finish() == []
    assert restored.stats.checkpoints_verified == 1


def test_a_redelivered_checkpoints_record_is_skipped() -> None:
    # the class docstring: "Records at offsets already processed are skipped"
    b = LedgerBuilder(KEY)
    entries = b.many(3)
    cp = b.checkpoint()
    checker = Checker(config())
    feed_entries(checker, entries)
    raw = enc("Checkpoint", cp)
    assert checker.feed(CHECKPOINTS, 400, raw) == [] and checker.next_offset[CHECKPOINTS] == 401
    assert checker.feed(CHECKPOINTS, 400, raw) == []
    checker.finish()
    assert checker.stats.checkpoints_seen == 1 and checker.stats.checkpoints_verified == 1


def test_a_checkpoint_behind_one_beyond_the_ledger_is_still_verified_at_the_end() -> None:
    # finish(): "settle every checkpoint"; only one claiming more entries than the ledger has
    # is a checkpoint_root_mismatch (docs/alerts.md), the one of the ledger's size is verified
    b = LedgerBuilder(KEY)
    entries = b.many(8)
    beyond, at_size = b.checkpoint(size=8), b.checkpoint(size=4)
    checker = Checker(config())
    feed_entries(checker, entries[:4])
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", beyond)) == []
    assert checker.feed(CHECKPOINTS, 1, enc("Checkpoint", at_size)) == []  # waits behind it (arrival order)
    found = checker.finish()
    assert [(f.kind.value, f.evidence["offset"]) for f in found] == [("checkpoint_root_mismatch", "0")]
    assert checker.stats.checkpoints_verified == 1


def test_the_anchor_of_a_rejected_checkpoint_raises_nothing_more() -> None:
    # docs/alerts.md `checkpoint_bad_signature`: "not signed by a trusted key"; its anchor is
    # about a checkpoint already reported, so it raises nothing more
    b = LedgerBuilder(KEY)
    entries = b.many(3)
    rogue = b.checkpoint(key=PrivateKey.from_seed(bytes(range(5, 37))))  # not a trusted key
    checker = Checker(config())
    feed_entries(checker, entries)
    found = checker.feed(CHECKPOINTS, 0, enc("Checkpoint", rogue))
    found += checker.feed(CHECKPOINTS, 1, enc("TimestampAnchor", LedgerBuilder.anchor(rogue, b"token")))
    found += checker.finish()
    assert [f.kind.value for f in found] == ["checkpoint_bad_signature"]


def test_a_malformed_note_signature_does_not_silence_anchors_of_the_body_it_names() -> None:
    # only a rejected *checkpoint* makes its anchors and note lines "about a checkpoint already
    # reported"; a malformed note line names a body it cannot vouch for, and an anchor of a
    # checkpoint this ledger does not have is timestamp_invalid (docs/alerts.md)
    b = LedgerBuilder(KEY)
    entries = b.many(3)
    other = LedgerBuilder(KEY)
    other.many(2)
    missing = other.checkpoint()  # a checkpoint this ledger never sees
    body_hash = hashlib.sha256(missing["body"]).digest()
    malformed = enc("NoteSignature", {"tree_size": missing["tree_size"], "body_hash": body_hash, "role": "log",
                                      "name": "ledgerstream/test", "key_id": b"abc", "signature": b"x" * 72,
                                      "created_at": missing["created_at"]})  # a 3-byte key ID
    checker = Checker(config())
    feed_entries(checker, entries)
    found = checker.feed(CHECKPOINTS, 0, malformed)
    found += checker.feed(CHECKPOINTS, 1, enc("TimestampAnchor", LedgerBuilder.anchor(missing, b"token")))
    assert [f.kind.value for f in found][-1] == "timestamp_invalid" and len(found) == 2


def test_a_peer_checkpoint_ending_where_a_gap_starts_is_compared() -> None:
    # entries 0..4 are all there (the gap is 5..6), so this ledger's tree of size 5 is exact
    # and a peer checkpoint of size 5 with another root is a split view (docs/alerts.md)
    b = LedgerBuilder(KEY)
    checker, _ = checked_with_gap(b)
    other = LedgerBuilder(KEY)
    other.many(5, agents=("someone-else",))
    found = checker.check_peer_checkpoint((0, enc("Checkpoint", other.checkpoint())), "mirror.checkpoints")
    assert [f.kind.value for f in found] == ["split_view"]
    other.many(1, agents=("someone-else",))  # size 6 covers the hole: not comparable
    assert checker.check_peer_checkpoint((1, enc("Checkpoint", other.checkpoint())), "mirror.checkpoints") == []
    assert checker.stats.peer_checkpoints_beyond == 1


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_tokens_of_one_tsa_must_not_go_back_in_time(tsa: TsaFiles, tmp_path: Path, order: tuple[int, int]) -> None:
    # docs/alerts.md `timestamp_out_of_order`: a genTime earlier than the newest seen from the
    # same TSA (in topic order); the dev TSA stamps with millisecond precision
    b = LedgerBuilder(KEY)
    entries = b.many(2)
    cps = [b.checkpoint()]
    entries += b.many(2)
    cps.append(b.checkpoint())
    tokens = []
    for cp in cps:  # the second token is stamped after the first
        (tmp_path / str(len(tokens))).mkdir()
        tokens.append(stamp(tsa, cp["body"], tmp_path / str(len(tokens))))
    checker = Checker(config(tsa_ca=tsa.ca_cert.read_bytes()))
    feed_entries(checker, entries)
    for i, cp in enumerate(cps):
        assert checker.feed(CHECKPOINTS, i, enc("Checkpoint", cp)) == []
    found = []
    for n, i in enumerate(order):
        found += checker.feed(CHECKPOINTS, 2 + n, enc("TimestampAnchor", LedgerBuilder.anchor(cps[i], tokens[i])))
    assert [f.kind.value for f in found] == ([] if order == (0, 1) else ["timestamp_out_of_order"])
    assert checker.stats.timestamps_verified == 2


def test_a_smaller_checkpoint_carrying_the_verified_root_and_head_is_inconsistent() -> None:
    # docs/alerts.md `checkpoint_inconsistent`: tree sizes never shrink and a checkpoint of a
    # smaller size must have that size's root; one of size 3 with the root and head of the
    # verified size-5 checkpoint (built and signed here) contradicts it
    b = LedgerBuilder(KEY)
    entries = b.many(5)
    cp5 = b.checkpoint()
    body = records.checkpoint_body(b.origin, 3, cp5["root_hash"], cp5["chain_head"], cp5["created_at"])
    forged = dict(cp5, tree_size=3, body=body, signature=KEY.sign(body))
    checker = Checker(config())
    feed_entries(checker, entries)
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp5)) == []
    found = checker.feed(CHECKPOINTS, 1, enc("Checkpoint", forged)) + checker.finish()
    assert [f.kind.value for f in found] == ["checkpoint_inconsistent"]
    # evidence: the values compared, the root this ledger has at size 3 among them
    assert found[0].evidence["computed_root"] == b.tree.root(3).hex()
    assert found[0].evidence["verified_size"] == "5" and found[0].evidence["root"] == cp5["root_hash"].hex()


def test_a_resolved_link_to_an_event_of_another_agent_is_a_link_mismatch() -> None:
    # docs/spec.md section 9 step 7: "resolved links name an earlier entry with that
    # agent/event"; the entry holding that event id belongs to another agent
    b = LedgerBuilder(KEY)
    entries = b.many(2, agents=("agent-b",))
    target = entries[1]
    def claim_resolved(e: dict[str, Any]) -> None:
        e["resolved_links"][0].update(status="resolved", seq=target["seq"], entry_hash=target["entry_hash"])
    entries.append(b.entry("agent-a", links=[("agent-c", target["action"]["event_id"])], mutate=claim_resolved))
    checker = Checker(config())
    found = feed_entries(checker, entries) + [f.kind.value for f in checker.finish()]
    assert found == ["link_mismatch"]


def test_a_gap_before_the_agent_s_newest_entry_does_not_explain_its_jump() -> None:
    # docs/alerts.md `agent_chain_break`: only a gap that can hold the agent's missing entries
    # (after its newest entry) explains a jump of its agent_seq
    b = LedgerBuilder(KEY)
    entries = b.many(1, agents=("agent-b",))
    b.skip()
    b.skip()
    entries += b.many(2, agents=("agent-a",))
    entries.append(b.entry("agent-a", mutate=lambda e: e.update(agent_seq=e["agent_seq"] + 1)))
    checker = Checker(config())
    found = checker.feed_entries([(i, entry_bytes(e)) for i, e in enumerate(entries)])
    assert [(f.kind.value, f.seq_from) for f in found] == [("gap", 1), ("agent_chain_break", 5)]


def test_a_longer_gap_still_makes_checkpoints_unverifiable_after_a_restore() -> None:
    # docs/alerts.md `gap`: "after a longer gap, checkpoints covering the hole cannot be
    # checked and are counted as checkpoints_unverifiable (no second alert)"
    b = LedgerBuilder(KEY)
    entries = b.many(3)
    for _ in range(3):
        b.skip()
    entries += b.many(3)
    cp = b.checkpoint()
    checker = Checker(config())
    assert feed_entries(checker, entries) == ["gap"]
    restored = Checker.restore(config(), checker.export_state(), checker.drain_journal())
    assert restored.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) + restored.finish() == []
    assert restored.stats.checkpoints_unverifiable == 1 and restored.stats.checkpoints_verified == 0
    assert [restored.hash_at(s) for s in (3, 4)] == [None, None]  # the hole's hashes are unknown
    assert restored.hash_at(5) == b.hashes[5]                      # the last one's is the next's prev_hash


def test_an_anchor_of_a_checkpoint_above_256_entries_names_its_size() -> None:
    # docs/alerts.md `timestamp_invalid` only when the anchor names another tree size than its
    # checkpoint: sizes of a real ledger are above 256 and decoded afresh from each record
    b = LedgerBuilder(KEY, signing_mode="checkpoint")  # unsigned entries: quick to build
    entries = b.many(300)
    cp = b.checkpoint()
    checker = Checker(config())
    assert feed_entries(checker, entries) == []
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) == []
    assert checker.feed(CHECKPOINTS, 1, enc("TimestampAnchor", LedgerBuilder.anchor(cp, b"token"))) == []
    assert checker.stats.timestamps_unverified == 1  # no TSA CA configured: counted, not checked
    wrong = dict(LedgerBuilder.anchor(cp, b"token"), tree_size=299)
    assert [f.kind.value for f in checker.feed(CHECKPOINTS, 2, enc("TimestampAnchor", wrong))] == ["timestamp_invalid"]


def test_pending_links_counts_the_links_still_waiting() -> None:
    b = LedgerBuilder(KEY)
    entries = [b.entry("agent-a", links=[("agent-x", "later")]), b.entry("agent-a", links=[("agent-y", "never")])]
    checker = Checker(config())
    feed_entries(checker, entries)
    checker.finish()
    assert checker.pending_links == 2
    resolving = [b.entry("agent-x", event_id="later"), b.entry("agent-a")]
    feed_entries(checker, resolving, first_offset=2)
    checker.finish()
    assert checker.pending_links == 1  # the link to agent-x/later became an edge
    assert checker.graph.agent_pairs() == {"agent-a": {"agent-x": 1}}


def test_a_restored_checker_still_knows_which_checkpoints_it_rejected() -> None:
    # export_state carries "everything else" a restore needs: the anchor of a checkpoint
    # reported before the restart raises nothing more after it
    b = LedgerBuilder(KEY)
    entries = b.many(3)
    rogue = b.checkpoint(key=PrivateKey.from_seed(bytes(range(5, 37))))
    checker = Checker(config())
    feed_entries(checker, entries)
    assert [f.kind.value for f in checker.feed(CHECKPOINTS, 0, enc("Checkpoint", rogue))] == ["checkpoint_bad_signature"]
    restored = Checker.restore(config(), checker.export_state(), checker.drain_journal())
    assert restored.feed(CHECKPOINTS, 1, enc("TimestampAnchor", LedgerBuilder.anchor(rogue, b"token"))) == []


@pytest.mark.parametrize("restart", [False, True])
def test_only_the_newest_1000_rejected_checkpoints_silence_their_anchors(restart: bool) -> None:
    # rogue checkpoints are attacker input: the checker remembers the newest 1000 it reported
    # (in memory and in its state); an anchor of an older one is reported again, as an anchor
    # of a checkpoint this ledger does not have (docs/alerts.md timestamp_invalid)
    b = LedgerBuilder(KEY)
    entries = b.many(3)
    rogue = PrivateKey.from_seed(bytes(range(5, 37)))
    checker = Checker(config())
    feed_entries(checker, entries)
    cps, found = [], []
    for offset in range(1002):
        b.now_us += 1
        cps.append(b.checkpoint(key=rogue))
        found += checker.feed(CHECKPOINTS, offset, enc("Checkpoint", cps[-1]))
    assert [f.kind.value for f in found] == ["checkpoint_bad_signature"]  # one run, one incident
    found += checker.feed(CHECKPOINTS, 1002, enc("Checkpoint", cps[5]))  # reported again: the newest now
    state = checker.export_state()
    assert state["rejected_bodies"] == [hashlib.sha256(cp["body"]).hexdigest()
                                        for cp in cps[2:5] + cps[6:] + [cps[5]]]
    if restart:
        checker = Checker.restore(config(), state, checker.drain_journal())

    def anchor(i: int, offset: int) -> list[str]:
        return [f.kind.value for f in checker.feed(CHECKPOINTS, offset, enc("TimestampAnchor",
                                                                            LedgerBuilder.anchor(cps[i], b"t")))]
    assert anchor(5, 1003) == [] and anchor(2, 1004) == [] and anchor(1001, 1005) == []
    assert anchor(1, 1006) == ["timestamp_invalid"] and anchor(0, 1007) == ["timestamp_invalid"]


@pytest.mark.parametrize("size", [1, 4, 5, 300])
def test_a_checkpoint_finding_points_at_the_last_entry_it_covers(size: int) -> None:
    # docs/alerts.md: "for checkpoints, the last entry the checkpoint covers"
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    entries = b.many(size)
    wrong = b.checkpoint(root=bytes(32))  # signed, but not the root of the entries
    checker = Checker(config())
    feed_entries(checker, entries)
    found = checker.feed(CHECKPOINTS, 0, enc("Checkpoint", wrong)) + checker.finish()
    assert [(f.kind.value, f.seq_from, f.seq_to) for f in found] == [("checkpoint_root_mismatch", size - 1, size - 1)]
    # the evidence: the values compared (the builder's tree and chain are the entries')
    ev = found[0].evidence
    assert (ev["expected_root"], ev["got_root"]) == (b.tree.root(size).hex(), bytes(32).hex())
    assert ev["expected_head"] == ev["got_head"] == b.hashes[size - 1].hex()


@pytest.mark.parametrize("target_at", [0, 1, 2])
def test_a_resolved_link_to_any_entry_of_a_reported_gap_raises_nothing_more(target_at: int) -> None:
    # docs/alerts.md `gap` is the one alert: a link resolved to a missing entry (first, middle
    # or last of the gap) cannot be checked against it and is no link_mismatch
    b = LedgerBuilder(KEY)
    entries = b.many(3)
    missing = []
    for i in range(3):
        missing.append(b.entry("agent-b"))
        b.entries.pop()  # sequenced, never published
    entries.append(b.entry("agent-a", links=[("agent-b", missing[target_at]["action"]["event_id"])]))
    assert entries[-1]["resolved_links"][0]["status"] == "resolved"
    checker = Checker(config())
    found = feed_entries(checker, entries) + [f.kind.value for f in checker.finish()]
    assert found == ["gap"]


@pytest.mark.parametrize("origin", ["a.example/other-log", "z.example/other-log"])
@pytest.mark.parametrize("configured", [False, True])
def test_a_peer_checkpoint_of_another_origin_raises_nothing(origin: str, configured: bool) -> None:
    # docs/alerts.md `split_view`: "Checkpoints not signed by a trusted key or of another origin
    # raise nothing" (origins sorting before and after this ledger's); the origin is the
    # configured one or that of the verified checkpoints
    b = LedgerBuilder(KEY)
    entries = b.many(5)
    checker = Checker(config(origin=b.origin if configured else None))
    feed_entries(checker, entries)
    if not configured:
        assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", b.checkpoint())) == []
    checker.finish()
    other = LedgerBuilder(KEY, origin=origin)
    other.many(3, agents=("someone-else",))
    assert checker.check_peer_checkpoint((9, enc("Checkpoint", other.checkpoint())), "mirror.checkpoints") == []
    assert checker.stats.peer_checkpoints_checked == 0


def test_a_link_answer_without_a_link_is_a_link_mismatch() -> None:
    # docs/spec.md section 9 step 7: resolved_links answers action.links one by one, so an
    # action without links has no answers
    b = LedgerBuilder(KEY)
    entries = b.many(2)
    def answer(e: dict[str, Any]) -> None:
        e["resolved_links"] = [{"agent_id": "agent-b", "event_id": "e-1", "status": "pending", "seq": None,
                                "entry_hash": None}]
    entries.append(b.entry("agent-a", mutate=answer))
    checker = Checker(config())
    found = feed_entries(checker, entries) + [f.kind.value for f in checker.finish()]
    assert found == ["link_mismatch"]


def test_rejected_records_are_counted_and_a_run_of_them_is_one_incident() -> None:
    # docs/alerts.md: a record failing steps 1-3 is rejected; a run of them of one kind is one
    # incident, the rest counted as `suppressed`
    b = LedgerBuilder(KEY)
    entries = b.many(2)
    checker = Checker(config())
    found = feed_entries(checker, entries[:1])
    for offset in (1, 2, 3):
        found += [f.kind.value for f in checker.feed(ENTRIES, offset, b"\x00garbage")]
    found += [f.kind.value for f in checker.feed(ENTRIES, 4, entry_bytes(entries[1]))]
    assert found == ["undecodable"]
    s = checker.stats
    assert (s.entries_seen, s.entries_rejected, s.suppressed) == (5, 3, 2)


def test_an_older_consistent_checkpoint_read_after_a_newer_one_raises_nothing() -> None:
    # [6] sizes never shrink *for the same history*: a smaller checkpoint whose root and head
    # are this ledger's at its size (a delayed record) is consistent, no alert
    b = LedgerBuilder(KEY)
    entries = b.many(5)
    cp3, cp5 = b.checkpoint(size=3), b.checkpoint(size=5)
    checker = Checker(config())
    feed_entries(checker, entries)
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp5)) == []
    assert checker.feed(CHECKPOINTS, 1, enc("Checkpoint", cp3)) + checker.finish() == []
    assert checker.stats.checkpoints_seen == 2


@pytest.mark.parametrize("root", [bytes(32), b"\xff" * 32])
def test_a_checkpoint_of_the_verified_size_with_another_root_is_inconsistent(root: bytes) -> None:
    # docs/alerts.md `checkpoint_inconsistent`: roots never change; here roots that sort
    # before and after the verified one, signed by the trusted key
    b = LedgerBuilder(KEY)
    entries = b.many(5)
    cp5 = b.checkpoint()
    checker = Checker(config())
    feed_entries(checker, entries)
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp5)) == []
    other = b.checkpoint(root=root)
    assert [f.kind.value for f in checker.feed(CHECKPOINTS, 1, enc("Checkpoint", other))] == ["checkpoint_inconsistent"]


def test_a_missing_first_entry_explains_the_agent_seq_of_the_agent_s_next_entry() -> None:
    # docs/alerts.md `agent_chain_break`: "Not raised when a reported gap explains the jump";
    # here the gap is entry 0 alone, which was the agent's first entry
    b = LedgerBuilder(KEY)
    b.entry("agent-a")
    b.entries.pop()  # seq 0: sequenced, never published
    entries = [b.entry("agent-a"), b.entry("agent-b")]
    assert entries[0]["agent_seq"] == 1
    checker = Checker(config())
    found = feed_entries(checker, entries) + [f.kind.value for f in checker.finish()]
    assert found == ["gap"]


# --- found by the mutation analysis of 2026-12-06 (docs/decisions.md D43) ---

def test_expiring_an_over_claiming_checkpoint_still_verifies_one_of_the_ledger_s_size() -> None:
    # expire_checkpoints' docstring: queued checkpoints claiming more entries than the ledger
    # has are settled (docs/alerts.md `checkpoint_root_mismatch`); one queued behind it that
    # covers exactly the ledger, newest entry included, is verified like any other
    b = LedgerBuilder(KEY)
    entries = b.many(8)
    big, exact = b.checkpoint(size=8), b.checkpoint(size=5)
    checker = Checker(config())
    assert feed_entries(checker, entries[:5]) == []
    assert checker.feed_checkpoints([(0, enc("Checkpoint", big)), (1, enc("Checkpoint", exact))]) == []
    found = checker.expire_checkpoints(2)
    assert [(f.kind.value, f.seq_from, f.seq_to) for f in found] == [("checkpoint_root_mismatch", 5, 7)]
    assert checker.stats.checkpoints_verified == 1 and checker.tree.size == 5
    assert checker.expire_checkpoints(2) == []  # settled once


def test_a_held_peer_claim_is_compared_as_soon_as_a_checkpoint_completes_the_ledger_to_its_size() -> None:
    # docs/alerts.md `split_view`: a claim beyond the ledger is held "until its own ledger
    # reaches that size"; the ledger's own checkpoint over its newest entry reaches it, with
    # no further entry needed
    _, entries, own, other = own_and_other()
    checker = Checker(config())
    assert feed_entries(checker, entries) == []
    assert checker.feed_peer_checkpoints([(0, enc("Checkpoint", other.checkpoint()))], "mirror") == []
    found = checker.feed_checkpoints([(0, enc("Checkpoint", own))])
    assert [f.kind.value for f in found] == ["split_view"]
    assert checker.stats.checkpoints_verified == 1
