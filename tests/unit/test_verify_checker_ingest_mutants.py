"""The Checker's ingest side (core/verify/checker.py: feed_*, _expire, _integrate, _fill_gap,
_make_tentative) on the cases its mutation run showed untested (docs/mutation.md). Ledgers
are built with tests/support/ledger_builder.py (records, hashes and signatures as the signer
makes them); the expected answers come from the Checker's docstrings, docs/alerts.md and
docs/spec.md, and where they are hashes or roots, from the builder's own chain and tree."""
from __future__ import annotations

from typing import Any

import pytest

from ledgerstream.core import merkle, records
from ledgerstream.core.verify import CHECKPOINTS, ENTRIES, Checker, check_entries
from support.checker_cases import KEY, checker_config, feed_entries, own_and_other
from support.ledger_builder import STEP_US, LedgerBuilder, enc, entry_bytes

pytestmark = pytest.mark.unit

config = checker_config


def batch(entries: list[dict[str, Any]], first_offset: int = 0) -> list[tuple[int, bytes]]:
    return [(first_offset + i, entry_bytes(e)) for i, e in enumerate(entries)]


def kinds(found: list) -> list[str]:
    return [f.kind.value for f in found]


# --- ledger time ([8] link grace) -------------------------------------------------------------

def test_a_link_does_not_age_while_ledger_time_stands_still_at_zero() -> None:
    # docs/spec.md section 3: ledger time is "received_at of the newest entry minus that of the
    # linking entry"; docs/alerts.md `link_dangling`: "A quiet ledger does not age links".
    # Entries received at time 0 (the epoch, a valid long): no ledger time passes until one
    # is received later, so a grace of half a microsecond has not run out before that.
    b = LedgerBuilder(KEY, now_us=-STEP_US)
    entries = [b.entry("agent-a", links=[("agent-x", "never")])]
    entries += [b.entry("agent-b", advance_ms=0) for _ in range(3)]
    assert [e["received_at"] for e in entries] == [0, 0, 0, 0]
    checker = Checker(config(link_grace_seconds=0.5e-6, link_grace_entries=None))
    assert kinds(checker.feed_entries(batch(entries))) == []
    later = b.entry("agent-b")  # received 1 ms later: now the grace has passed
    found = checker.feed_entries(batch([later], 4))
    assert [(f.kind.value, f.seq_from) for f in found] == [("link_dangling", 0)]


@pytest.mark.parametrize("restarted", [False, True])
def test_ledger_time_starts_at_the_first_entry_even_before_the_epoch(restarted: bool) -> None:
    # docs/spec.md section 3: ledger time is "received_at of the newest entry minus that of the
    # linking entry", whatever the clock's origin: entries received 2 s before 1970 (received_at
    # is a signed long) have waited no ledger time until a later one arrives. (It used to start
    # at 0, so such a link had waited 2 s at once.)
    b = LedgerBuilder(KEY, now_us=-2_000_000 - STEP_US)
    checker = Checker(config(link_grace_seconds=1, link_grace_entries=None))
    if restarted:  # the state of a checker that has seen no entry yet
        checker = Checker.restore(config(link_grace_seconds=1, link_grace_entries=None), checker.export_state(), [])
    entries = [b.entry("agent-a", links=[("agent-x", "never")]), b.entry("agent-b", advance_ms=0)]
    assert [e["received_at"] for e in entries] == [-2_000_000, -2_000_000]
    assert kinds(checker.feed_entries(batch(entries))) == []
    b.now_us += 1_000_000  # one second later: exactly the grace, not more
    assert kinds(checker.feed_entries(batch([b.entry("agent-b", advance_ms=0)], 2))) == []
    b.now_us += 1
    found = checker.feed_entries(batch([b.entry("agent-b", advance_ms=0)], 3))
    assert [(f.kind.value, f.seq_from) for f in found] == [("link_dangling", 0)]


def test_a_link_into_a_missing_entry_makes_an_edge_only_when_that_entry_s_hash_is_known() -> None:
    # docs/alerts.md `gap` and the call graph (docs/verifiers.md): entries 1..3 never arrive; the
    # hash of 3 is known from entry 4's prev_hash, those of 1 and 2 from nowhere. Entry 5 links
    # to the events of entries 1 and 3: the link into 3 is checked against that hash and is an
    # edge; nothing shows who wrote entry 1, so that link is not (and not a finding either)
    b = LedgerBuilder(KEY, signing_mode="checkpoint")
    first = b.entry("agent-a")
    hidden = [b.entry("agent-x", event_id="in-hole"), b.entry("agent-b"), b.entry("agent-y", event_id="known")]
    after = [b.entry("agent-b"), b.entry("agent-c", links=[("agent-x", "in-hole"), ("agent-y", "known")]),
             b.entry("agent-b")]  # (the newest entry is integrated when the next one comes)
    assert [r["status"] for r in after[1]["resolved_links"]] == ["resolved", "resolved"]
    checker = Checker(config())
    found = checker.feed_entries(batch([first]) + batch(after, 4))
    assert [(f.kind.value, f.seq_from) for f in found] == [("gap", 1)]
    assert hidden[2]["seq"] == 3 and checker.graph.agent_pairs() == {"agent-c": {"agent-y": 1}}


# --- feeding: offsets already processed ---------------------------------------------------------

def test_feeding_only_records_already_processed_returns_nothing_and_changes_nothing() -> None:
    # feed_checked: "records at offsets already processed are skipped" and the class docstring:
    # "redelivery after a restart is harmless". A peer claim of size 5 waits for this ledger;
    # a split view it shows is raised once (whenever it is raised), never by a redelivery.
    b, entries, own, other = own_and_other()
    split = enc("Checkpoint", other.checkpoint())
    checker = Checker(config())
    found = checker.feed_entries(batch(entries))
    found += checker.feed_peer_checkpoints([(0, split)], "mirror.checkpoints")
    found += checker.feed_checkpoints([(0, enc("Checkpoint", own))])
    stale = list(check_entries(batch(entries), checker.config))
    assert checker.feed_checked(stale) == []
    assert checker.feed_checked([]) == []
    assert checker.next_offset[ENTRIES] == 5
    found += checker.feed_entries(batch(b.many(1), 5)) + checker.finish()
    assert kinds(found) == ["split_view"]
    assert checker.stats.entries_seen == 6


@pytest.mark.parametrize("restart", [False, True])
def test_a_redelivered_checkpoint_batch_is_processed_only_from_the_first_new_offset(restart: bool) -> None:
    # the class docstring: "Records at offsets already processed are skipped, so redelivery
    # after a restart is harmless"; a consumer re-reads from its last commit, so a batch may
    # start with records already processed and go on with new ones (here after offset 1,
    # an odd offset, and offset 2)
    b = LedgerBuilder(KEY)
    entries = b.many(5)
    good = enc("Checkpoint", b.checkpoint(size=3))
    wrong = enc("Checkpoint", b.checkpoint(size=4, root=bytes(32)))   # root not of the entries
    wrong5 = enc("Checkpoint", b.checkpoint(size=5, root=b"\xff" * 32))
    checker = Checker(config())
    assert kinds(checker.feed_entries(batch(entries))) == []
    first = checker.feed_checkpoints([(0, good), (1, wrong)])
    assert [(f.kind.value, f.evidence["offset"]) for f in first] == [("checkpoint_root_mismatch", "1")]
    assert checker.export_state()["next_offset"][CHECKPOINTS] == 2
    if restart:
        checker = Checker.restore(config(), checker.export_state(), checker.drain_journal())
    again = checker.feed_checkpoints([(0, good), (1, wrong), (2, wrong5)])
    assert [(f.kind.value, f.evidence["offset"]) for f in again] == [("checkpoint_root_mismatch", "2")]
    assert checker.export_state()["next_offset"][CHECKPOINTS] == 3
    assert checker.feed_checkpoints([(1, wrong), (2, wrong5)]) == []
    assert checker.stats.checkpoints_seen == 3  # 3, 4 and 5: each evaluated once


@pytest.mark.parametrize("topic", ["peer_checkpoints", "signer-state", "t.actions", "zzz"])
def test_feed_refuses_a_topic_role_other_than_entries_and_checkpoints(topic: str) -> None:
    # feed: one record of topic "entries" or "checkpoints"; any other role is refused
    # (roles sorting after both names included)
    checker = Checker(config())
    with pytest.raises(ValueError, match="unknown topic role"):
        checker.feed(topic, 0, b"\x00garbage")
    assert checker.stats.entries_seen == 0 and checker.next_offset == {ENTRIES: 0, CHECKPOINTS: 0}


# --- settling checkpoints at the end ------------------------------------------------------------

@pytest.mark.parametrize("settle", ["finish", "expire"])
def test_a_checkpoint_queued_behind_one_that_claims_too_much_is_still_verified(settle: str) -> None:
    # docs/alerts.md `checkpoint_root_mismatch`: at the end, a checkpoint whose tree_size is
    # beyond the last entry claims too much; a checkpoint read after it (it waited behind it,
    # arrival order) that the ledger covers is checked against the entries as usual, and the
    # timestamp anchor of the one reported raises nothing more (`timestamp_invalid`)
    b = LedgerBuilder(KEY)
    entries = b.many(8)
    big, small = b.checkpoint(size=8), b.checkpoint(size=3)
    checker = Checker(config())
    assert kinds(checker.feed_entries(batch(entries[:5]))) == []
    assert checker.feed_checkpoints([(0, enc("Checkpoint", big)), (1, enc("TimestampAnchor", LedgerBuilder.anchor(big, b"t"))),
                                     (2, enc("Checkpoint", small))]) == []
    found = checker.finish() if settle == "finish" else checker.expire_checkpoints()
    assert [(f.kind.value, f.evidence["offset"], f.seq_from, f.seq_to) for f in found] == [
        ("checkpoint_root_mismatch", "0", 5, 7)]
    assert checker.stats.checkpoints_verified == 1
    assert checker.last_checkpoint["tree_size"] == 3
    assert checker.last_checkpoint["root_hash"] == b.tree.root(3).hex()


# --- forks of the tentative head ----------------------------------------------------------------

def _forks_of_seq_3(n: int) -> tuple[LedgerBuilder, list[dict[str, Any]], dict[str, Any], list[LedgerBuilder]]:
    """Entries 0..2, the honest entry 3 (the head) and ``n`` different signed entries for
    seq 3 (forks), each with its own builder to continue it."""
    b = LedgerBuilder(KEY)
    entries = b.many(3)
    bases = [b.copy() for _ in range(n)]
    head = b.entry("agent-a", payload={"v": "honest"})
    forks = [base.entry("agent-a", payload={"v": f"rogue-{i}"}) for i, base in enumerate(bases)]
    return b, entries, head, list(zip(forks, bases))


def _adopting_checker() -> tuple[Checker, dict[int, int]]:
    adopted: dict[int, int] = {}  # seq -> offset of the record adopted for it
    checker = Checker(config(), on_adopt=lambda c: adopted.__setitem__(c.seq, c.offset))
    return checker, adopted


@pytest.mark.parametrize("second_sorts", ["higher", "lower"])
def test_a_second_different_fork_of_the_head_is_a_fork_and_the_chain_may_continue_from_it(second_sorts: str) -> None:
    # docs/alerts.md `fork`: an entry claiming the seq of the tentative head with a different
    # entry_hash is a fork (not a `duplicate`: that is the same entry_hash again); if the next
    # entry links to the fork, the verifier follows it without a second alert. Two rogue
    # entries for seq 3 (hashes ordered either way), the chain goes on from the second.
    _, entries, head, forks = _forks_of_seq_3(2)
    forks.sort(key=lambda fb: bytes(fb[0]["entry_hash"]), reverse=second_sorts == "lower")
    (f1, _), (f2, base2) = forks
    nxt = base2.entry("agent-b")
    checker, adopted = _adopting_checker()
    found = checker.feed_entries(batch(entries + [head, f1, f2, nxt]))
    assert [(f.kind.value, f.evidence["offset"]) for f in found] == [("fork", "4"), ("fork", "5")]
    assert found[1].evidence["got"] == bytes(f2["entry_hash"]).hex()
    checker.finish()
    assert adopted == {0: 0, 1: 1, 2: 2, 3: 5, 4: 6}
    assert checker.hash_at(3) == bytes(f2["entry_hash"])


@pytest.mark.parametrize("replayed", ["head", "fork"])
def test_a_replayed_copy_of_the_head_or_of_the_fork_candidate_is_a_duplicate_and_ignored(replayed: str) -> None:
    # docs/alerts.md `duplicate`: "An entry that is already in the ledger appears again (a
    # replayed record) ... The copy is ignored"; held_offsets: the records held are the
    # tentative head and a fork candidate, and a copy of either does not replace the candidate.
    # The fork is still followed when the chain continues from it (no second alert): it is
    # the one adopted for seq 3 (on_adopt)
    _, entries, head, [(fork, base)] = _forks_of_seq_3(1)
    nxt = base.entry("agent-b")
    checker, adopted = _adopting_checker()
    found = checker.feed_entries(batch(entries + [head, fork, head if replayed == "head" else fork]))
    assert [(f.kind.value, f.evidence["offset"]) for f in found] == [("fork", "4"), ("duplicate", "5")]
    assert checker.held_offsets == {3, 4}
    assert kinds(checker.feed_entries(batch([nxt], 6)) + checker.finish()) == []
    assert adopted[3] == 4 and checker.hash_at(3) == bytes(fork["entry_hash"])


# --- agent chains after a gap -------------------------------------------------------------------

def test_a_wrong_agent_prev_hash_is_an_agent_chain_break_even_after_a_gap() -> None:
    # docs/alerts.md `agent_chain_break`: agent_prev_hash is not the previous entry's hash;
    # only a *jump* of agent_seq is explained by a gap. Here agent_seq is right (none of
    # agent-a's entries is missing) but agent_prev_hash is not its entry 1's hash.
    b = LedgerBuilder(KEY)
    entries = b.many(2, agents=("agent-a",))
    b.skip()
    entries.append(b.entry("agent-a", mutate=lambda e: e.update(agent_prev_hash=b"\x11" * 32)))
    assert entries[-1]["agent_seq"] == 2
    checker = Checker(config())
    found = checker.feed_entries(batch(entries)) + checker.finish()
    assert [(f.kind.value, f.seq_from) for f in found] == [("gap", 2), ("agent_chain_break", 3)]
    assert found[1].evidence["expected"] == b.hashes[1].hex()


@pytest.mark.parametrize("agent_seq", [0, 1])
def test_an_agent_seq_going_back_after_a_gap_is_an_agent_chain_break(agent_seq: int) -> None:
    # docs/alerts.md `agent_chain_break`: "agent_seq is not the previous agent_seq + 1";
    # a gap can explain entries of the agent that are missing (a jump forward), never a
    # step back to an agent_seq it already used
    b = LedgerBuilder(KEY)
    entries = b.many(3, agents=("agent-a",))
    b.skip()
    entries.append(b.entry("agent-a", mutate=lambda e: e.update(agent_seq=agent_seq)))
    checker = Checker(config())
    found = checker.feed_entries(batch(entries)) + checker.finish()
    assert [(f.kind.value, f.seq_from) for f in found] == [("gap", 3), ("agent_chain_break", 4)]
    assert (found[1].evidence["expected_agent_seq"], found[1].evidence["got_agent_seq"]) == ("3", str(agent_seq))


# --- placeholders of missing entries --------------------------------------------------------------

@pytest.mark.parametrize("restart", [False, True])
def test_missing_entries_of_unknown_hash_are_zero_leaves_in_the_tree(restart: bool) -> None:
    # History.tree: "The Merkle tree over every integrated seq (leaf: the entry hash, zeros if
    # unknown)"; _fill_gap: of the missing entries only the last one's hash is known (the
    # next entry's prev_hash). Entries 3, 4 and 5 are missing.
    b = LedgerBuilder(KEY)
    entries = b.many(3)
    for _ in range(3):
        b.skip()
    entries += b.many(2)
    checker = Checker(config())
    assert kinds(checker.feed_entries(batch(entries)) + checker.finish()) == ["gap"]
    if restart:
        checker = Checker.restore(config(), checker.export_state(), checker.drain_journal())
    expected = merkle.MerkleTree()
    for seq, h in enumerate(b.hashes):
        expected.append(merkle.leaf_hash(records.merkle_leaf_input(records.ZERO_HASH if seq in (3, 4) else h)))
    assert checker.tree.size == 8
    assert [checker.tree.root(n) for n in range(1, 9)] == [expected.root(n) for n in range(1, 9)]


@pytest.mark.parametrize("prev", [b"\x00" * 31 + b"\x01", b"\xff" * 32], ids=["low", "high"])
def test_an_entry_whose_prev_hash_is_not_the_head_s_hash_is_a_chain_break(prev: bytes) -> None:
    # docs/alerts.md `chain_break`: the next expected seq with a prev_hash that matches
    # neither the head nor a fork candidate (here hashes sorting below and above any head);
    # the verifier adopts it as the new head, its predecessor stays entry 3
    b = LedgerBuilder(KEY)
    entries = b.many(4)
    entries.append(b.entry("agent-a", mutate=lambda e: e.update(prev_hash=prev)))
    entries.append(b.entry("agent-b"))
    checker = Checker(config())
    found = checker.feed_entries(batch(entries)) + checker.finish()
    assert [(f.kind.value, f.seq_from) for f in found] == [("chain_break", 4)]
    assert (found[0].evidence["expected"], found[0].evidence["got"]) == (b.hashes[3].hex(), prev.hex())
    assert [checker.hash_at(s) for s in range(6)] == b.hashes


@pytest.mark.parametrize("prev", [b"\x00" * 31 + b"\x01", b"\xff" * 32], ids=["low", "high"])
def test_an_entry_linking_to_neither_the_head_nor_its_fork_is_a_chain_break(prev: bytes) -> None:
    # docs/alerts.md `chain_break`: "a prev_hash that matches neither the head nor a fork
    # candidate of the head"; the verifier switches to a fork only when the chain continues
    # from it, so here entry 3 stays the head it had (the honest one)
    b, entries, head, [(fork, _)] = _forks_of_seq_3(1)
    nxt = b.entry("agent-b", mutate=lambda e: e.update(prev_hash=prev))
    checker, adopted = _adopting_checker()
    found = checker.feed_entries(batch(entries + [head, fork, nxt])) + checker.finish()
    assert [(f.kind.value, f.seq_from) for f in found] == [("fork", 3), ("chain_break", 4)]
    assert found[1].evidence["expected"] == bytes(head["entry_hash"]).hex()
    assert adopted[3] == 3 and checker.hash_at(3) == bytes(head["entry_hash"])


def test_a_pending_link_to_an_event_already_in_the_ledger_is_an_edge_to_that_entry() -> None:
    # docs/alerts.md `link_mismatch`: "A link marked pending whose target is already in the
    # ledger is accepted as resolved (the signer's dedup index is bounded)": the call graph
    # gets the edge from the linking entry to the entry holding the event (links.Edge)
    b = LedgerBuilder(KEY)
    entries = b.many(3, agents=("agent-b",))
    target = entries[1]
    def forgot(e: dict[str, Any]) -> None:
        e["resolved_links"][0].update(status="pending", seq=None, entry_hash=None)
    entries.append(b.entry("agent-a", links=[("agent-b", target["action"]["event_id"])], mutate=forgot))
    entries.append(b.entry("agent-c"))
    checker = Checker(config())
    assert kinds(checker.feed_entries(batch(entries)) + checker.finish()) == []
    assert checker.pending_links == 0
    [edge] = checker.graph.edges_of("agent-a")
    assert (edge.from_seq, edge.from_agent, edge.to_seq, edge.to_agent) == (3, "agent-a", 1, "agent-b")
    assert {"g": [3, "agent-a", 1, "agent-b", "caused_by"]} in checker.drain_journal()


def test_hash_at_knows_no_entry_beyond_the_integrated_ones() -> None:
    # hash_at: "entry_hash of integrated entry seq (None: unknown ...)"; seqs the ledger does
    # not have (yet) are unknown
    b = LedgerBuilder(KEY)
    entries = b.many(5)
    checker = Checker(config())
    feed_entries(checker, entries)
    checker.finish()
    assert [checker.hash_at(s) for s in range(5)] == b.hashes
    assert [checker.hash_at(s) for s in (-1, 5, 6, 300)] == [None, None, None, None]


def test_a_fresh_checker_reads_both_topics_from_offset_0() -> None:
    # docs/verifiers.md: "`--reverify` deletes the state and verifies from offset 0" (the
    # worker's reader starts each topic at the checker's next_offset, also the state's and
    # status.json's "next_offset"); Kafka offsets start at 0
    checker = Checker(config())
    assert checker.next_offset == {ENTRIES: 0, CHECKPOINTS: 0}
    assert checker.export_state()["next_offset"] == {ENTRIES: 0, CHECKPOINTS: 0}
    restored = Checker.restore(config(), checker.export_state(), checker.drain_journal())
    assert restored.next_offset == {ENTRIES: 0, CHECKPOINTS: 0}


@pytest.mark.parametrize("missing_seq", [3, 280])
def test_a_one_entry_gap_keeps_the_tree_exact_at_any_seq(missing_seq: int) -> None:
    # docs/alerts.md `gap`: "A one-entry gap keeps the Merkle tree exact (the missing entry's
    # hash is the next entry's signed prev_hash)": a checkpoint covering it verifies, no
    # second alert; real ledgers have gaps far beyond the first few entries
    b = LedgerBuilder(KEY, signing_mode="checkpoint")  # unsigned entries: quick to build
    entries = b.many(missing_seq)
    b.skip()
    entries += b.many(4)
    cp = b.checkpoint()
    checker = Checker(config())
    found = checker.feed_entries(batch(entries)) + checker.feed_checkpoints([(0, enc("Checkpoint", cp))])
    found += checker.finish()
    assert [(f.kind.value, f.seq_from, f.seq_to) for f in found] == [("gap", missing_seq, missing_seq)]
    assert checker.stats.checkpoints_verified == 1 and checker.stats.checkpoints_unverifiable == 0
    assert checker.hash_at(missing_seq) == b.hashes[missing_seq]
    assert checker.tree.root() == b.tree.root()


@pytest.mark.parametrize("claimed_agent", ["agent-a", "agent-c"])
def test_a_resolved_link_naming_another_agent_than_the_event_s_is_a_link_mismatch(claimed_agent: str) -> None:
    # docs/spec.md section 3: a resolved link names the seq and entry_hash of the entry whose
    # action has that (agent_id, event_id); the event is agent-b's, the link claims an agent
    # sorting before or after it
    b = LedgerBuilder(KEY)
    entries = b.many(2, agents=("agent-b",))
    target = entries[1]
    def claim_resolved(e: dict[str, Any]) -> None:
        e["resolved_links"][0].update(status="resolved", seq=target["seq"], entry_hash=target["entry_hash"])
    entries.append(b.entry("agent-x", links=[(claimed_agent, target["action"]["event_id"])], mutate=claim_resolved))
    checker = Checker(config())
    found = checker.feed_entries(batch(entries)) + checker.finish()
    assert [(f.kind.value, f.seq_from) for f in found] == [("link_mismatch", 2)]
    assert checker.graph.edges_of("agent-x") == []


@pytest.mark.parametrize("claimed_agent", ["agent-a", "agent-c"])
def test_a_pending_link_naming_another_agent_than_the_event_s_stays_pending(claimed_agent: str) -> None:
    # docs/spec.md section 3: a link names an (agent_id, event_id) pair; an entry with that
    # event id but of another agent is not its target, so the link stays pending (no edge)
    b = LedgerBuilder(KEY)
    entries = b.many(2, agents=("agent-b",))
    entries.append(b.entry("agent-x", links=[(claimed_agent, entries[1]["action"]["event_id"])]))
    assert entries[-1]["resolved_links"][0]["status"] == "pending"
    checker = Checker(config())
    assert kinds(checker.feed_entries(batch(entries)) + checker.finish()) == []
    assert checker.pending_links == 1 and checker.graph.edges_of("agent-x") == []


@pytest.mark.parametrize("status", ["", "PENDING", "expired", "open", "zzz"])
def test_a_link_answer_of_any_unknown_status_is_a_link_mismatch(status: str) -> None:
    # docs/spec.md section 3: a resolved_links item's status is "resolved" or "pending";
    # docs/alerts.md `link_mismatch`: "... or an unknown status" (statuses sorting before,
    # between and after the two known ones)
    b = LedgerBuilder(KEY)
    entries = b.many(2)
    def unknown(e: dict[str, Any]) -> None:
        e["resolved_links"][0]["status"] = status
    entries.append(b.entry("agent-a", links=[("agent-x", "not-yet")], mutate=unknown))
    checker = Checker(config())
    found = checker.feed_entries(batch(entries)) + checker.finish()
    assert [(f.kind.value, f.seq_from) for f in found] == [("link_mismatch", 2)]
    assert checker.pending_links == 0
