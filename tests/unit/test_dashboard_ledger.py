"""The dashboard's in-memory ledger view and entry checks, fed with records built like the signer's."""
from __future__ import annotations

import pytest

from ledgerstream.core import merkle, mldsa
from ledgerstream.tools.dashboard.checks import EntryChecker
from ledgerstream.tools.dashboard.ledger import LedgerView
from support.ledger_builder import LedgerBuilder, enc, entry_bytes, flip_inside, other_entry

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def key() -> mldsa.PrivateKey:
    return mldsa.PrivateKey.generate()


def fed(builder: LedgerBuilder, checker: EntryChecker | None = None) -> LedgerView:
    """A view fed the builder's entries (trusting the builder's key unless ``checker`` says)."""
    checker = checker or EntryChecker([builder.key.public_key()], None)
    view = LedgerView(checker.config, checker.checkpoint_signature)
    for offset, entry in enumerate(builder.entries):
        view.add_entry_record(offset, entry_bytes(entry))
    return view


def test_main_chain_head_agents_and_calls(key: mldsa.PrivateKey) -> None:
    b = LedgerBuilder(key)
    caller = b.entry("planner")
    b.entry("coder", links=[("planner", caller["action"]["event_id"])])
    b.many(4)
    view = fed(b)
    # the core confirms the newest entry once its successor or a checkpoint arrives, as on the verifiers
    assert view.head(now_us=b.now_us)["size"] == 5
    view.add_checkpoint_record(0, enc("Checkpoint", b.checkpoint()))
    head = view.head(now_us=b.now_us)
    assert (head["size"], head["seq"], head["foreign_records"]) == (6, 5, 0)
    assert head["root"] == b.tree.root().hex() and head["entry_hash"] == b.hashes[-1].hex()
    assert head["throughput"] == {"per_second_10s": 0.6, "per_second_1m": 0.1}  # signer time, not arrival
    assert view.head(now_us=b.now_us + 120_000_000)["throughput"]["per_second_1m"] == 0
    agents = {a["agent_id"]: a for a in view.agent_views()}
    assert agents["planner"]["count"] == 1 and agents["coder"]["head_seq"] == 1
    assert all(a["chain_breaks"] == 0 for a in agents.values())
    graph = view.graph()
    assert graph["edges"] == [{"caller": "planner", "callee": "coder", "calls": 1}]
    # the verifiers' graph.json names the linking entry 'from' and its cause 'to': the same call
    same = {"from_seq": 1, "from_agent": "coder", "to_seq": 0, "to_agent": "planner"}
    other = {"from_seq": 5, "from_agent": "agent-c", "to_seq": 4, "to_agent": "agent-b"}
    merged = view.graph([same, other])
    assert {"caller": "planner", "callee": "coder", "calls": 1} in merged["edges"]
    assert {"caller": "agent-b", "callee": "agent-c", "calls": 1} in merged["edges"]


def test_forks_copies_and_gaps_stay_outside_the_chain(key: mldsa.PrivateKey) -> None:
    b = LedgerBuilder(key)
    b.many(4)
    view = fed(b)  # entries 0..2 confirmed, 3 tentative
    raw = entry_bytes(b.entries[1])
    view.add_entry_record(10, raw)  # an identical replay
    view.add_entry_record(11, flip_inside(raw, bytes(b.entries[1]["signature"])[:32]))  # flipped bit
    view.add_entry_record(12, entry_bytes(other_entry(b.entries[2], key)))  # a validly signed fork
    view.add_entry_record(13, entry_bytes(other_entry(b.entries[1], mldsa.PrivateKey.generate())))  # another key
    b.skip()
    view.add_entry_record(14, entry_bytes(b.entry("agent-a")))  # after a gap: the core adopts it, reports the gap
    view.add_entry_record(15, b"\xc3\x01not avro")
    view.add_checkpoint_record(0, enc("Checkpoint", b.checkpoint()))
    reasons = [f["reason"] for f in view.foreign_views()]
    assert view.head()["foreign_records"] == 5 and len(reasons) == 5
    assert reasons[0].startswith("duplicate: entry 1 appears again")
    assert reasons[1].startswith(("bad_signature:", "hash_mismatch:"))
    assert reasons[2].startswith("fork: a different entry under a trusted key claims seq 2")
    assert reasons[3].startswith("unknown_key:") and reasons[4].startswith("undecodable:")
    assert [f.offset for f in view.other_records(1)] == [10, 11, 13]
    assert view.size == 6 and view.head()["root"] == b.tree.root().hex()  # entry 4 is missing, 5 adopted
    with pytest.raises(LookupError, match="missing"):
        view.locate(4)
    assert view.locate(5)[0] == 14


def test_checkpoints_are_verified_and_compared_with_the_entries(key: mldsa.PrivateKey) -> None:
    b = LedgerBuilder(key)
    b.many(5)
    checker = EntryChecker([key.public_key()], None)
    view = fed(b, checker)
    good = b.checkpoint()
    view.add_checkpoint_record(0, enc("Checkpoint", good))
    view.add_checkpoint_record(1, enc("TimestampAnchor", LedgerBuilder.anchor(good, b"not-a-token")))
    wrong_root = b.checkpoint(size=5, root=bytes(32))
    view.add_checkpoint_record(2, enc("Checkpoint", wrong_root))
    ahead = b.checkpoint(size=5)
    ahead_rec = {**ahead, "tree_size": 9}  # claims entries the view has not read
    view.add_checkpoint_record(3, enc("Checkpoint", ahead_rec))
    views = view.checkpoint_views()
    assert [(c["tree_size"], c["signature"], c["root"]) for c in views] == [
        (9, "valid", "pending"), (5, "valid", "mismatch"), (5, "valid", "match")]
    assert views[2]["anchors"] == [{"tsa": "dev-tsa", "offset": 1}]
    nobody = EntryChecker([], None)
    unknown = LedgerView(nobody.config, nobody.checkpoint_signature)
    unknown.add_checkpoint_record(0, enc("Checkpoint", good))
    assert unknown.checkpoint_views()[0]["signature"] == "unknown_key"


def test_entry_report_states_and_proof(key: mldsa.PrivateKey) -> None:
    b = LedgerBuilder(key)
    b.many(6)
    checker = EntryChecker([key.public_key()], None)
    view = fed(b, checker)
    offset, raw, agent_prev = view.locate(4)
    report = checker.report(view, 4, offset, raw, agent_prev)
    assert report.state == "sequenced" and report.verified  # no checkpoint yet: inclusion pending
    assert {c.name: c.status for c in report.checks} == {
        "entry hash": "ok", "signature": "ok", "chain": "ok", "agent chain": "ok", "inclusion": "pending"}
    view.add_checkpoint_record(0, enc("Checkpoint", b.checkpoint()))
    report = checker.report(view, 4, offset, raw, agent_prev)
    assert report.state == "published" and report.verified
    proof = report.proof
    merkle.verify_inclusion(bytes.fromhex(proof["leaf_hash"]), 4, 6, [bytes.fromhex(h) for h in proof["hashes"]],
                            b.tree.root())
    stranger = EntryChecker([mldsa.PrivateKey.generate().public_key()], None)
    checks = {c.name: c.status for c in stranger.report(view, 4, offset, raw, agent_prev).checks}
    assert checks["signature"] == "unknown"
    with pytest.raises(LookupError):
        view.locate(6)


def test_alerts_are_marked_and_forged_ones_change_no_genuine_count() -> None:
    from ledgerstream.core.wire import codec
    from ledgerstream.core.alert_signature import VerifierKey, sign_alert

    v1, v2 = mldsa.PrivateKey.from_seed(bytes([1]) * 32), mldsa.PrivateKey.from_seed(bytes([2]) * 32)
    trusted = {k.public_key().key_id: VerifierKey(vid, k.public_key()) for vid, k in (("v1", v1), ("v2", v2))}
    view = LedgerView(EntryChecker([], None).config, None, trusted)
    base = {"alert_id": "a", "kind": "fork", "severity": "critical", "seq_from": 7, "seq_to": 7, "agent_id": None,
            "detail": "two entries claim seq 7", "evidence": {}, "verifier_id": "v1", "time": 1}
    genuine = view.add_alert_record(0, 0, codec.encode("Alert", sign_alert(base, v1)))
    assert (genuine["authenticity"], genuine["forged"], genuine["key_id"]) == ("verified", False, v1.public_key().key_id)
    assert "signature" not in genuine  # the page needs the key id, not 3309 bytes
    clear = {**base, "alert_id": "b", "kind": "all_clear", "severity": "info", "detail": "all clear"}
    forged = view.add_alert_record(0, 1, codec.encode("Alert", sign_alert(clear, v2)))  # v2's key claiming v1
    unsigned = view.add_alert_record(0, 2, codec.encode("Alert", clear))
    assert (forged["authenticity"], forged["authenticity_reason"], forged["forged"]) == ("forged", "wrong_verifier", True)
    assert (unsigned["authenticity"], unsigned["forged"]) == ("unsigned", True)
    assert view.alert_summary() == {"total": 3, "verified": 1, "by_kind": {"fork": 1}, "forged": 2,
                                    "forged_by_kind": {"all_clear": 2}}
    assert [a["authenticity"] for a in view.alert_views()] == ["verified", "forged", "unsigned"]
    assert LedgerView(EntryChecker([], None).config).add_alert_record(0, 0, codec.encode("Alert", sign_alert(base, v1)))["forged"] is True  # no trust
