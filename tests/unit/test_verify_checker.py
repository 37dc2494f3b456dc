"""The pure checker (ledgerstream.core.verify) against ledgers built like the signer builds them.

Every fault is made from valid records; each case asserts the exact list of finding kinds,
so a missed fault and a false or consequential alert both fail.
"""
from __future__ import annotations

import itertools
import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest

from ledgerstream.core import records
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import signatures as verify_signatures
from ledgerstream.core.verify import (CHECKPOINTS, ENTRIES, REJECTING, SEVERITY, Checker, CheckerConfig, Kind,
                                      LivenessSample, SignaturePool, StallMonitor, check_entries,
                                      check_raw_signatures)
from support.ledger_builder import (LedgerBuilder, enc, entry_bytes, flip_bit, flip_inside, other_entry, random_bytes,
                                   seal)

pytestmark = pytest.mark.unit

KEY = PrivateKey.from_seed(bytes(range(32)))
ROGUE = PrivateKey.from_seed(bytes(range(1, 33)))
DOCS = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"


class Ledger:
    """Records in topic order, with per-topic offsets, as a consumer would see them."""

    def __init__(self, builder: LedgerBuilder | None = None) -> None:
        self.b = builder or LedgerBuilder(KEY)
        self.records: list[tuple[str, int, bytes]] = []
        self._next = {ENTRIES: 0, CHECKPOINTS: 0}

    def put(self, topic: str, raw: bytes) -> None:
        self.records.append((topic, self._next[topic], raw))
        self._next[topic] += 2  # transaction markers take offsets too

    def entries(self, n: int, **kw: Any) -> None:
        for e in self.b.many(n, **kw):
            self.put(ENTRIES, entry_bytes(e))

    def entry(self, *args: Any, **kw: Any) -> dict[str, Any]:
        e = self.b.entry(*args, **kw)
        self.put(ENTRIES, entry_bytes(e))
        return e

    def checkpoint(self, **kw: Any) -> dict[str, Any]:
        cp = self.b.checkpoint(**kw)
        self.put(CHECKPOINTS, enc("Checkpoint", cp))
        return cp


def config(**kw: Any) -> CheckerConfig:
    kw.setdefault("link_grace_entries", 50)
    kw.setdefault("link_grace_seconds", None)
    return CheckerConfig.from_keys([KEY.public_key()], **kw)


def run(ledger: Ledger, cfg: CheckerConfig | None = None) -> tuple[list[str], Checker]:
    checker = Checker(cfg or config())
    found = []
    for topic, offset, raw in ledger.records:
        found += checker.feed(topic, offset, raw)
    found += checker.finish()
    return [f.kind.value for f in found], checker


def clean_prefix(n: int = 20) -> Ledger:
    ledger = Ledger()
    ledger.entries(n)
    ledger.checkpoint()
    return ledger


def continue_honestly(ledger: Ledger, n: int = 5) -> None:
    ledger.entries(n)
    ledger.checkpoint()


# --- a clean ledger -------------------------------------------------------------------------------

def test_long_clean_ledger_raises_nothing() -> None:
    ledger = Ledger()
    rng = random.Random(1)
    agents = [f"agent-{i}" for i in range(7)]
    for i in range(3000):
        links = []
        if i > 10 and rng.random() < 0.2:
            target = ledger.b.entries[rng.randrange(max(0, i - 100), i)]["action"]
            links = [(target["agent_id"], target["event_id"])]
        ledger.entry(agents[i % 7], links=links, payload={"i": i})
        if i % 250 == 249:
            ledger.checkpoint()
    kinds, checker = run(ledger)
    assert kinds == []
    assert checker.position == 3000 and checker.stats.signatures_verified == 3000
    assert checker.stats.checkpoints_verified == 12
    assert checker.last_checkpoint["tree_size"] == 3000
    assert checker.tree.root() == ledger.b.tree.root()
    assert len(checker.graph.edges) == sum(len(e["resolved_links"]) for e in ledger.b.entries) > 400


def test_checkpoint_signing_mode_verifies_through_checkpoints() -> None:
    ledger = Ledger(LedgerBuilder(KEY, signing_mode="checkpoint"))
    ledger.entries(30)
    ledger.checkpoint()
    kinds, checker = run(ledger)
    assert kinds == [] and checker.stats.unsigned_entries == 30 and checker.stats.checkpoints_verified == 1


# --- the fault matrix ------------------------------------------------------------------------------

def replayed(ledger: Ledger) -> None:
    ledger.put(ENTRIES, entry_bytes(ledger.b.entries[7]))


def bit_flip_hash(ledger: Ledger) -> None:
    raw = entry_bytes(ledger.b.entries[7])
    ledger.put(ENTRIES, flip_inside(raw, bytes(ledger.b.entries[7]["entry_hash"])))


def bit_flip_signature(ledger: Ledger) -> None:
    raw = entry_bytes(ledger.b.entries[7])
    ledger.put(ENTRIES, flip_inside(raw, bytes(ledger.b.entries[7]["signature"])))


def garbage(ledger: Ledger) -> None:
    ledger.put(ENTRIES, random_bytes(300))


def foreign_key(ledger: Ledger) -> None:
    forged = {**ledger.b.entries[-1], "seq": ledger.b.seq, "prev_hash": ledger.b.head}
    ledger.put(ENTRIES, entry_bytes(seal(dict(forged), ROGUE)))


def fork(ledger: Ledger) -> None:
    ledger.put(ENTRIES, entry_bytes(other_entry(ledger.b.entries[7], KEY)))


def gap(ledger: Ledger) -> None:
    ledger.b.skip()


def wrong_prev_hash(ledger: Ledger) -> None:
    ledger.entry("agent-b", mutate=lambda e: e.update(prev_hash=records.sha256(b"elsewhere")))


def wrong_agent_chain(ledger: Ledger) -> None:
    ledger.entry("agent-b", mutate=lambda e: e.update(agent_prev_hash=records.sha256(b"elsewhere")))


def wrong_root(ledger: Ledger) -> None:
    ledger.entries(3)
    ledger.checkpoint(root=records.sha256(b"not the root"))


def checkpoint_other_key(ledger: Ledger) -> None:
    ledger.entries(3)
    ledger.checkpoint(key=ROGUE)


def checkpoint_bad_signature(ledger: Ledger) -> None:
    ledger.entries(3)
    cp = ledger.b.checkpoint()
    cp["signature"] = bytes(len(cp["signature"]))
    ledger.put(CHECKPOINTS, enc("Checkpoint", cp))


def inconsistent_checkpoint(ledger: Ledger) -> None:
    # a validly signed checkpoint that rewrites the history of an already verified one
    ledger.checkpoint(size=10, root=records.sha256(b"rewritten history"))


def checkpoint_body_differs(ledger: Ledger) -> None:
    ledger.entries(2)
    cp = ledger.b.checkpoint()
    cp["root_hash"] = records.sha256(b"field only")
    ledger.put(CHECKPOINTS, enc("Checkpoint", cp))


def dangling_link(ledger: Ledger) -> None:
    ledger.entry("agent-a", links=[("agent-z", "never-recorded")])
    ledger.entries(60)  # grace: 50 entries


def mismatched_link(ledger: Ledger) -> None:
    target = ledger.b.entries[3]["action"]

    def lie(e: dict[str, Any]) -> None:
        e["resolved_links"][0]["entry_hash"] = records.sha256(b"some other entry")

    ledger.entry("agent-b", links=[(target["agent_id"], target["event_id"])], mutate=lie)


FAULTS: dict[str, tuple[Callable[[Ledger], None], list[str]]] = {
    "replayed_record": (replayed, ["duplicate"]),
    "bit_flip_in_hash": (bit_flip_hash, ["hash_mismatch"]),
    "bit_flip_in_signature": (bit_flip_signature, ["bad_signature"]),
    "random_300_bytes": (garbage, ["undecodable"]),
    "forged_with_other_key": (foreign_key, ["unknown_key"]),
    "fork": (fork, ["fork"]),
    "skipped_seq": (gap, ["gap"]),
    "wrong_prev_hash": (wrong_prev_hash, ["chain_break"]),
    "wrong_agent_chain": (wrong_agent_chain, ["agent_chain_break"]),
    "checkpoint_wrong_root": (wrong_root, ["checkpoint_root_mismatch"]),
    "checkpoint_other_key": (checkpoint_other_key, ["checkpoint_bad_signature"]),
    "checkpoint_bad_signature": (checkpoint_bad_signature, ["checkpoint_bad_signature"]),
    "checkpoint_inconsistent": (inconsistent_checkpoint, ["checkpoint_inconsistent"]),
    "checkpoint_body_differs": (checkpoint_body_differs, ["checkpoint_inconsistent"]),
    "dangling_link": (dangling_link, ["link_dangling"]),
    "mismatched_link": (mismatched_link, ["link_mismatch"]),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_each_fault_raises_exactly_its_kind(name: str) -> None:
    inject, expected = FAULTS[name]
    ledger = clean_prefix()
    inject(ledger)
    continue_honestly(ledger)
    kinds, checker = run(ledger)
    assert kinds == expected
    assert checker.position == ledger.b.seq


def test_random_bit_flips_are_always_rejected_and_never_break_the_chain() -> None:
    builder = LedgerBuilder(KEY)
    prefix = [entry_bytes(e) for e in builder.many(3)]
    victim, after = prefix[-1], entry_bytes(builder.entry("agent-a"))
    for bit in random.Random(5).sample(range(len(victim) * 8), 300):
        checker = Checker(config())
        checker.feed_entries(list(enumerate(prefix[:-1])))
        found = checker.feed(ENTRIES, 2, flip_bit(victim, bit))
        assert len(found) == 1 and found[0].kind in REJECTING, (bit, found)
        assert checker.feed_entries([(3, victim), (4, after)]) == []


# --- one incident, one alert; re-synchronisation ----------------------------------------------------

def test_a_run_of_garbage_is_one_incident() -> None:
    ledger = clean_prefix()
    for i in range(5):
        ledger.put(ENTRIES, random_bytes(300, seed=i))
    continue_honestly(ledger)
    kinds, checker = run(ledger)
    assert kinds == ["undecodable"] and checker.stats.suppressed == 4


def test_injected_chain_break_then_honest_entries_resyncs_on_the_honest_chain() -> None:
    ledger = clean_prefix()
    honest_next = ledger.b.copy()
    rogue = ledger.b.entry("agent-b", mutate=lambda e: e.update(prev_hash=records.sha256(b"x")))
    ledger.put(ENTRIES, entry_bytes(rogue))
    ledger.b = honest_next  # the real signer never saw the rogue entry and goes on
    continue_honestly(ledger, 6)
    kinds, checker = run(ledger)
    # two signed entries for one seq exist, so the fork is real; the checkpoint still verifies
    assert kinds == ["chain_break", "fork"]
    assert checker.stats.checkpoints_verified == 2 and checker.tree.root() == ledger.b.tree.root()


def test_one_entry_gap_keeps_checkpoints_verifiable() -> None:
    ledger = clean_prefix()
    skipped = ledger.b.skip()
    ledger.entry(skipped["action"]["agent_id"])  # the skipped entry's agent goes on: explained by the gap
    continue_honestly(ledger)
    kinds, checker = run(ledger)
    assert kinds == ["gap"] and checker.stats.checkpoints_verified == 2


def test_longer_gap_makes_later_checkpoints_unverifiable_not_alarming() -> None:
    ledger = clean_prefix()
    ledger.b.skip()
    ledger.b.skip()
    continue_honestly(ledger)
    kinds, checker = run(ledger)
    assert kinds == ["gap"]
    assert checker.stats.checkpoints_unverifiable == 1 and checker.position == ledger.b.seq


def test_fork_of_the_head_is_followed_when_the_chain_continues_from_it() -> None:
    ledger = clean_prefix()
    head = ledger.b.entries[-1]
    ledger.put(ENTRIES, entry_bytes(other_entry(head, KEY)))
    continue_honestly(ledger)
    kinds, checker = run(ledger)
    assert kinds == ["fork"] and checker.stats.checkpoints_verified == 2


def test_redelivered_offsets_are_skipped() -> None:
    ledger = clean_prefix()
    checker = Checker(config())
    for _ in range(2):
        for topic, offset, raw in ledger.records:
            assert checker.feed(topic, offset, raw) == []
    assert checker.position == 20 and checker.stats.entries_seen == 20


# --- links -------------------------------------------------------------------------------------------

def test_pending_link_resolved_later_becomes_an_edge() -> None:
    ledger = clean_prefix()
    ledger.entry("agent-a", links=[("agent-late", "evt-late")])
    ledger.entry("agent-late", event_id="evt-late")
    continue_honestly(ledger)
    kinds, checker = run(ledger)
    assert kinds == [] and checker.pending_links == 0
    edge = checker.graph.edges[-1]
    assert (edge.from_agent, edge.to_agent, edge.to_seq - edge.from_seq) == ("agent-a", "agent-late", 1)
    assert checker.graph.agent_pairs() == {"agent-a": {"agent-late": 1}}
    assert checker.graph.edges_of("agent-late") == [edge]


@pytest.mark.parametrize("seconds,entries,dangles", [(None, 50, True), (10.0, None, False), (0.05, None, True),
                                                     (0.05, 500, False), (0.05, 50, True)])
def test_link_grace_in_ledger_time_and_or_entries(seconds: float | None, entries: int | None, dangles: bool) -> None:
    ledger = clean_prefix()
    ledger.entry("agent-a", links=[("agent-z", "never")])
    ledger.entries(60)  # 60 entries 1 ms apart: 0.06 s of ledger time
    kinds, _ = run(ledger, config(link_grace_seconds=seconds, link_grace_entries=entries))
    assert kinds == (["link_dangling"] if dangles else [])


def test_resolved_links_must_answer_the_actions_links() -> None:
    ledger = clean_prefix()
    ledger.entry("agent-b", links=[("agent-a", ledger.b.entries[0]["action"]["event_id"])],
                 mutate=lambda e: e.update(resolved_links=[]))
    kinds, _ = run(ledger)
    assert kinds == ["link_mismatch"]


# --- checkpoints -------------------------------------------------------------------------------------

def test_checkpoint_before_its_entries_waits_for_them() -> None:
    builder = LedgerBuilder(KEY)
    entries = builder.many(10)
    cp = builder.checkpoint()
    checker = Checker(config())
    assert checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp)) == []
    assert checker.stats.checkpoints_verified == 0
    assert checker.feed_entries([(i, entry_bytes(e)) for i, e in enumerate(entries)]) == []
    assert checker.stats.checkpoints_verified == 1


def test_checkpoint_beyond_the_ledger_is_reported_at_the_end() -> None:
    builder = LedgerBuilder(KEY)
    entries = builder.many(10)
    cp = builder.checkpoint()
    checker = Checker(config())
    checker.feed_entries([(i, entry_bytes(e)) for i, e in enumerate(entries[:6])])
    checker.feed(CHECKPOINTS, 0, enc("Checkpoint", cp))
    assert [f.kind for f in checker.finish()] == [Kind.CHECKPOINT_ROOT_MISMATCH]


# --- approvals ----------------------------------------------------------------------------------------

def test_approved_action_without_valid_approvals_is_reported_when_approvers_are_configured() -> None:
    from ledgerstream.core.approvals import ApproverSet

    alice = PrivateKey.from_seed(bytes(range(2, 34)))
    approvers = ApproverSet({"alice": alice.public_key()}, 1)
    ledger = clean_prefix()
    ledger.entry("agent-a", mutate=lambda e: e["action"].update(policy={"decision": "approved", "rule": "data:*",
                                                                        "reason": None}))
    assert run(ledger)[0] == []  # no approver keys configured: nothing to check against
    kinds, checker = run(ledger, config(approvers=approvers))
    assert kinds == ["approval_invalid"] and checker.stats.approvals_checked == 1


# --- persistence ---------------------------------------------------------------------------------------

def test_restore_from_journal_and_state_continues_exactly() -> None:
    ledger = clean_prefix(30)
    ledger.entry("agent-a", links=[("agent-late", "evt-late")])
    fork(ledger)
    ledger.entries(4)
    ledger.checkpoint()
    ledger.entry("agent-late", event_id="evt-late")
    garbage(ledger)
    continue_honestly(ledger)
    full_kinds, full = run(ledger)

    cut = len(ledger.records) // 2
    first = Checker(config())
    kinds = [f.kind.value for t, o, r in ledger.records[:cut] for f in first.feed(t, o, r)]
    journal, state = first.drain_journal(), first.export_state()
    second = Checker.restore(config(), state, journal)
    for topic, offset, raw in ledger.records[cut - 3:]:  # redelivery across the cut is harmless
        kinds += [f.kind.value for f in second.feed(topic, offset, raw)]
    kinds += [f.kind.value for f in second.finish()]
    assert kinds == full_kinds == ["fork", "undecodable"]
    assert second.position == full.position and second.tree.root() == full.tree.root()
    assert [e.to_dict() for e in second.graph.edges] == [e.to_dict() for e in full.graph.edges]
    assert second.stats.to_dict() == full.stats.to_dict()


# --- liveness -------------------------------------------------------------------------------------------

def sample(now: float, **kw: Any) -> LivenessSample:
    base = dict(now=now, actions_end=0, signer_committed=0, entries_end=0, verified=0, checkpoint_size=0)
    return LivenessSample(**{**base, **kw})


def test_stalled_when_actions_wait_and_the_signer_does_not_move() -> None:
    mon = StallMonitor(stall_seconds=10, checkpoint_overdue_seconds=1000)
    assert mon.observe(sample(0, actions_end=5, signer_committed=5)) == []
    assert mon.observe(sample(20, actions_end=5, signer_committed=5)) == []  # idle, nothing waiting
    assert mon.observe(sample(21, actions_end=9, signer_committed=5)) == []
    assert mon.observe(sample(31, actions_end=9, signer_committed=5)) == []  # waiting for 10 s: not yet
    assert [f.kind for f in mon.observe(sample(32, actions_end=9, signer_committed=5))] == [Kind.STALLED]
    assert mon.observe(sample(60, actions_end=12, signer_committed=5)) == []  # one alert per episode
    assert mon.observe(sample(61, actions_end=12, signer_committed=12)) == []
    assert mon.observe(sample(62, actions_end=13, signer_committed=12)) == []


def test_stalled_without_signer_offsets_uses_the_entries_end() -> None:
    mon = StallMonitor(stall_seconds=10)
    mon.observe(sample(0, actions_end=3, signer_committed=None, entries_end=7))
    assert mon.observe(sample(30, actions_end=3, signer_committed=None, entries_end=7)) == []  # no actions
    assert mon.observe(sample(31, actions_end=4, signer_committed=None, entries_end=7)) == []
    assert [f.kind for f in mon.observe(sample(42, actions_end=4, signer_committed=None, entries_end=7))] \
        == [Kind.STALLED]


def test_stalled_when_checkpoints_are_overdue() -> None:
    mon = StallMonitor(stall_seconds=1000, checkpoint_overdue_seconds=30)
    assert mon.observe(sample(0, verified=100, checkpoint_size=100)) == []
    assert mon.observe(sample(10, verified=150, checkpoint_size=100)) == []
    assert [f.kind for f in mon.observe(sample(41, verified=160, checkpoint_size=100))] == [Kind.STALLED]
    assert mon.observe(sample(80, verified=170, checkpoint_size=100)) == []
    assert mon.observe(sample(81, verified=170, checkpoint_size=170)) == []


# --- the taxonomy ----------------------------------------------------------------------------------------

def test_every_kind_has_a_severity_and_a_documented_section() -> None:
    assert set(SEVERITY) == set(Kind)
    text = DOCS.read_text()
    documented = re.findall(r"^## `([a-z_]+)`", text, flags=re.M)
    assert documented == [k.value for k in Kind]
    for kind in Kind:
        section = text.split(f"## `{kind.value}`", 1)[1].split("\n## ", 1)[0]
        assert f"**Severity:** {SEVERITY[kind].value}" in section
        for part in ("**Meaning.**", "**Triggered by.**", "**What to do.**"):
            assert part in section, (kind, part)


def _fed_in_batches(ledger: Ledger, signatures: SignaturePool | None, ahead: bool = False
                    ) -> tuple[list[str], Checker]:
    """The records as a worker feeds them: runs of each topic as one batch each; ``ahead``:
    with the verdicts the worker process makes on their signatures."""
    checker = Checker(config())
    found = []
    for topic, run_ in itertools.groupby(ledger.records, key=lambda r: r[0]):
        batch = [(offset, raw) for _, offset, raw in run_]
        verdicts = check_raw_signatures(batch, config()) if ahead else None
        found += (checker.feed_entries(batch, signatures, verdicts) if topic == ENTRIES
                  else checker.feed_checkpoints(batch))
    found += checker.finish()
    return [f.kind.value for f in found], checker


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_pipelined_signature_checks_find_exactly_what_one_by_one_finds(name: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Background signature checks (SignaturePool, small chunks so that a batch spans
    several) and verdicts made before the batch (as the worker process makes them) change
    nothing: same findings, same chain, same Merkle tree."""
    monkeypatch.setattr(verify_signatures, "PIPELINE_CHUNK", 3)
    inject, expected = FAULTS[name]
    ledger = clean_prefix()
    inject(ledger)
    continue_honestly(ledger)
    with ThreadPoolExecutor(2) as pool:
        for signatures, ahead in ((None, False), (SignaturePool(pool, 1), False), (SignaturePool(pool, 2), False),
                                  (None, True), (SignaturePool(pool, 1), True)):
            kinds, checker = _fed_in_batches(ledger, signatures, ahead)
            assert kinds == expected
            assert checker.position == ledger.b.seq
            assert checker.tree.root() == run(ledger)[1].tree.root()
            signed, taken = checker.stats.signatures_verified, checker.stats.signatures_checked_ahead
            assert signed > 20 and (signed <= taken <= signed + 1 if ahead else taken == 0)  # + a bad one


def test_signature_pool_checks_a_chunk_per_worker_and_keeps_the_order() -> None:
    builder = LedgerBuilder(KEY)
    entries = builder.many(10)
    checks = [(KEY.public_key(), bytes(e["signature"]), records.entry_signing_message(bytes(e["entry_hash"])))
              for e in entries]
    checks[3] = (checks[3][0], checks[3][1], records.entry_signing_message(bytes(32)))  # signs something else

    class CountingPool(ThreadPoolExecutor):
        tasks = 0

        def submit(self, *args, **kwargs):  # type: ignore[override]
            CountingPool.tasks += 1
            return super().submit(*args, **kwargs)

    expected = [i != 3 for i in range(10)]
    with CountingPool(2) as pool:
        assert SignaturePool(pool, 2).submit(checks)() == expected
        on_pool = KEY.public_key().verify_many_releases_gil
        assert CountingPool.tasks == (2 if on_pool else 0)  # without a GIL-free backend: on the caller
        assert SignaturePool(pool, 2).submit([])() == []
    assert SignaturePool(None).submit(checks)() == expected


def test_checked_entries_can_be_integrated_by_another_checker() -> None:
    """The stateless checks and the integration can run apart (another thread or process)."""
    ledger = clean_prefix(12)
    bit_flip_signature(ledger)
    continue_honestly(ledger)
    entries = [(offset, raw) for topic, offset, raw in ledger.records if topic == ENTRIES]
    checked = list(check_entries(entries, config()))
    integrating = Checker(config())
    found = integrating.feed_checked(checked[:8]) + integrating.feed_checked(checked[4:])  # overlap: skipped
    assert [f.kind.value for f in found] == ["bad_signature"]
    assert integrating.feed_checked(checked) == []
    direct = Checker(config())
    assert [f.kind.value for f in direct.feed_entries(entries)] == ["bad_signature"]
    assert (integrating.position, integrating.tree.root()) == (direct.position, direct.tree.root())
    assert integrating.position == ledger.b.seq


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_the_index_checker_on_disk_finds_what_the_in_memory_one_finds(name: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger index runs the Checker over index/history.py (hashes and Merkle levels in
    files, events and agent heads in SQLite) and reopens it from disk after every batch of 3
    records, as after a crash: the same findings, in order, as one in-memory Checker, and the
    same tree."""
    from ledgerstream.core import spilled
    from ledgerstream.index.core import IndexCore
    from ledgerstream.index.paths import IndexPaths

    monkeypatch.setattr(spilled, "TAIL_BYTES", 3 * 32)  # most reads come from the files
    inject, _ = FAULTS[name]
    ledger = clean_prefix()
    inject(ledger)
    continue_honestly(ledger)
    memory = Checker(config())
    want = [f.kind.value for topic, offset, raw in ledger.records for f in memory.feed(topic, offset, raw)]
    got: list[str] = []
    for start in range(0, len(ledger.records), 3):
        core = IndexCore(IndexPaths.of(tmp_path), config(), fsync=False)
        try:
            got += [f.kind.value for f in core.process(ledger.records[start:start + 3]).findings]
        finally:
            core.close()
    core = IndexCore(IndexPaths.of(tmp_path), config(), fsync=False)
    try:
        assert got == want and got
        assert core.checker.tree.size == memory.tree.size and core.checker.tree.root() == memory.tree.root()
        assert core.checker.head_hash == memory.head_hash
    finally:
        core.close()


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_the_verifier_checker_on_disk_finds_what_the_in_memory_one_finds(name: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A verifier worker's Checker over verifier_worker/history.py (hashes and Merkle levels in
    files, events, agent heads and checkpoint bodies in its own SQLite), saved and reopened
    after every batch of 3 records as after a restart: the same findings, in order, as one
    in-memory Checker, the same tree and head, and the same call-graph counts."""
    from ledgerstream.core import spilled
    from ledgerstream.verifier_worker.store import StateStore

    monkeypatch.setattr(spilled, "TAIL_BYTES", 3 * 32)
    inject, _ = FAULTS[name]
    ledger = clean_prefix()
    ledger.entry("agent-a", links=[("agent-late", "evt-late")])  # pending across a save and reload
    ledger.entries(3)
    ledger.entry("agent-late", event_id="evt-late")
    inject(ledger)
    continue_honestly(ledger)
    memory = Checker(config())
    want = [f.kind.value for topic, offset, raw in ledger.records for f in memory.feed(topic, offset, raw)]
    want += [f.kind.value for f in memory.finish()]
    got: list[str] = []
    for start in range(0, len(ledger.records), 3):
        store = StateStore(tmp_path, fsync=False)
        checker, _ = store.load(config())
        got += [f.kind.value for topic, offset, raw in ledger.records[start:start + 3]
                for f in checker.feed(topic, offset, raw)]
        store.save(checker, {})
        store.close()
    store = StateStore(tmp_path, fsync=False)
    checker, _ = store.load(config())
    try:
        got += [f.kind.value for f in checker.finish()]
        assert got == want and got
        assert (checker.position, checker.tree.root(), checker.head_hash) == \
            (memory.position, memory.tree.root(), memory.head_hash)
        assert checker.graph.to_dict() == memory.graph.to_dict() and memory.graph.total_edges
        assert checker.stats.to_dict() == memory.stats.to_dict()
    finally:
        store.close()

