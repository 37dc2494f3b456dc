"""Findings as values (core/verify/findings.py) on the cases its mutation run showed untested
(docs/mutation.md). Expected values come from docs/alerts.md: an alert carries kind,
severity, seq_from/seq_to (the entries concerned), agent_id, a readable detail and evidence
(the values compared, hex for bytes, plus topic and offset of the record); `undecodable`
evidence is the reason, length, SHA-256 and first bytes; the four kinds of steps 1-3 reject
a record."""
from __future__ import annotations

import hashlib

import pytest

from ledgerstream.core.errors import DecodeError, VerificationError
from ledgerstream.core.verify import CHECKPOINTS, ENTRIES, REJECTING, SEVERITY, Finding, Kind, Severity, Stats
from ledgerstream.core.verify.findings import at_offset, located, undecodable

pytestmark = pytest.mark.unit


def test_a_finding_about_one_entry_spans_that_entry() -> None:
    f = Finding.make(Kind.GAP, "x", seq=7)
    assert (f.seq_from, f.seq_to) == (7, 7)
    g = Finding.make(Kind.GAP, "x", seq=7, seq_to=9)
    assert (g.seq_from, g.seq_to) == (7, 9)
    h = Finding.make(Kind.STALLED, "x")
    assert (h.seq_from, h.seq_to, h.agent_id) == (None, None, None)
    z = Finding.make(Kind.GAP, "x", seq=0, seq_to=0)
    assert (z.seq_from, z.seq_to) == (0, 0)


def test_evidence_is_hex_for_bytes_text_as_is_and_json_otherwise() -> None:
    f = Finding.make(Kind.HASH_MISMATCH, "x", seq=1, agent_id="a", expected=b"\x00\xab", got=bytearray(b"\xff"),
                     view=memoryview(b"\x10"), key_id="k1", tree_size=12, ok=True, sizes=[3, 1],
                     pairs={"b": 1, "a": 2}, nothing=None)
    assert dict(f.evidence) == {"expected": "00ab", "got": "ff", "view": "10", "key_id": "k1", "tree_size": "12",
                                "ok": "true", "sizes": "[3, 1]", "pairs": '{"a": 2, "b": 1}'}
    assert f.agent_id == "a"


def test_a_finding_from_an_error_keeps_its_evidence_and_names_its_kind() -> None:
    err = VerificationError("bad", kind="bad_signature", key_id="k", computed=b"\x01")
    f = Finding.from_error(Kind.BAD_SIGNATURE, err, seq=3, agent_id="a", **at_offset(9, ENTRIES))
    assert f.kind == Kind.BAD_SIGNATURE and f.detail == "bad" and (f.seq_from, f.seq_to, f.agent_id) == (3, 3, "a")
    assert dict(f.evidence) == {"key_id": "k", "computed": "01", "error_kind": "bad_signature",
                                "topic": "entries", "offset": "9"}
    own = VerificationError("other", kind="hash_mismatch", error_kind="kept")
    assert Finding.from_error(Kind.HASH_MISMATCH, own).evidence["error_kind"] == "kept"


def test_to_dict_is_the_alert_fields() -> None:
    f = Finding.make(Kind.FORK, "two entries", seq=4, seq_to=5, agent_id="b", got=b"\x02")
    assert f.to_dict() == {"kind": "fork", "severity": "critical", "seq_from": 4, "seq_to": 5, "agent_id": "b",
                           "detail": "two entries", "evidence": {"got": "02"}}
    assert f.severity is Severity.CRITICAL


def test_located_points_at_the_entry_and_its_record() -> None:
    entry = {"seq": 12, "action": {"agent_id": "agent-x"}}
    assert located(40, entry) == {"seq": 12, "agent_id": "agent-x", "topic": "entries", "offset": 40}
    assert at_offset(3, CHECKPOINTS) == {"topic": "checkpoints", "offset": 3}


@pytest.mark.parametrize("raw", [b"", b"\x01", bytes(range(48)), bytes(range(256)) * 2])
def test_undecodable_evidence_is_reason_length_sha256_and_the_first_48_bytes(raw: bytes) -> None:
    f = undecodable(raw, 77, ENTRIES, DecodeError("bad_magic", "broken"))
    assert f.kind == Kind.UNDECODABLE and (f.seq_from, f.seq_to) == (None, None)
    assert dict(f.evidence) == {"reason": "bad_magic", "length": str(len(raw)),
                                "sha256": hashlib.sha256(raw).hexdigest(), "head": raw[:48].hex(),
                                "topic": "entries", "offset": "77"}


def test_the_kinds_of_steps_1_to_3_reject_a_record_and_no_other_does() -> None:
    assert REJECTING == {Kind.UNDECODABLE, Kind.HASH_MISMATCH, Kind.UNKNOWN_KEY, Kind.BAD_SIGNATURE}


def test_severities_are_the_documented_ones() -> None:
    # docs/alerts.md, one "**Severity:**" line per section (also checked against the text itself
    # by test_verify_checker.test_every_kind_has_a_severity_and_a_documented_section)
    assert {k.value: s.value for k, s in SEVERITY.items()} == {
        "gap": "critical", "duplicate": "medium", "fork": "critical", "chain_break": "critical",
        "hash_mismatch": "high", "bad_signature": "high", "unknown_key": "high", "undecodable": "medium",
        "checkpoint_root_mismatch": "critical", "checkpoint_inconsistent": "critical",
        "checkpoint_bad_signature": "high", "timestamp_invalid": "high", "timestamp_out_of_order": "medium",
        "agent_chain_break": "high", "link_dangling": "low", "link_mismatch": "high", "stalled": "medium",
        "approval_invalid": "high", "cosignature_invalid": "high", "split_view": "critical",
        "snapshot_rejected": "high"}


def test_stats_start_at_zero_and_list_findings_by_kind_in_order() -> None:
    s = Stats()
    d = s.to_dict()
    assert d["findings"] == {} and d["witnesses"] == {}
    assert all(v == 0 for k, v in d.items() if k not in ("findings", "witnesses"))
    s.findings["gap"] += 2
    s.findings["fork"] += 1
    s.entries_seen = 5
    d = s.to_dict()
    assert d["findings"] == {"fork": 1, "gap": 2} and list(d["findings"]) == ["fork", "gap"]
    assert d["entries_seen"] == 5 and "findings" in d


def test_where_a_finding_points_is_given_by_keyword_only() -> None:
    """Finding.make(kind, detail, *, seq=..., seq_to=..., agent_id=..., **evidence): a third
    positional value cannot be taken for a seq by mistake."""
    with pytest.raises(TypeError):
        Finding.make(Kind.GAP, "x", 5)  # type: ignore[misc]
    assert Finding.make(kind=Kind.GAP, detail="x", seq=5).seq_from == 5


def test_a_finding_is_an_immutable_value() -> None:
    """A finding is published, counted and signed as it is: it cannot be altered after."""
    import dataclasses

    f = Finding.make(Kind.GAP, "x", seq=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.seq_from = 6  # type: ignore[misc]
