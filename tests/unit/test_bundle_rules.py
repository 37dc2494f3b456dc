"""verify-bundle's rules for what a sparse selection of entries can still prove: chain starts,
cross-agent links (the core's rule, core/verify/) and selection.json.

Entries come from tests/support/ledger_builder.py, each tampered one re-hashed and re-signed
(``mutate``) as an attacker who re-signs a whole bundle with a fresh, unpinned key would: only
these rules can catch them (hashes, signatures and proofs all hold)."""
from __future__ import annotations

from typing import Any

import pytest

from ledgerstream.core import mldsa
from ledgerstream.tools import bundle_format as bf
from ledgerstream.tools.bundle_verify import BundleReport, _Checkpoint, _Verifier
from support.ledger_builder import LedgerBuilder

pytestmark = pytest.mark.unit

KEY = mldsa.PrivateKey.from_seed(bytes(range(3, 35)))
MAIN = _Checkpoint(size=6, root=bytes(32), chain_head=bytes(32), origin="ledgerstream/test", timestamps=[])


def chain(mutate_link: Any = None, mutate_first: Any = None) -> dict[int, dict[str, Any]]:
    """planner (0) <- researcher (1, links 0) <- writer (2, links 1), then noise."""
    b = LedgerBuilder(KEY)
    plan = b.entry("planner", mutate=mutate_first)
    search = b.entry("researcher", links=[("planner", plan["action"]["event_id"])])
    b.entry("writer", links=[("researcher", search["action"]["event_id"])], mutate=mutate_link)
    b.entry("noise")
    return {e["seq"]: e for e in b.entries}


def errors(decoded: dict[int, dict[str, Any]], keep: list[int], *, follow: bool = False,
           selection: dict | None = None) -> list[dict[str, str]]:
    report = BundleReport()
    members = {bf.entry_avro(s): b"" for s in keep}
    if selection is not None:
        members[bf.SELECTION] = bf.canonical(selection)
    v = _Verifier(members, report, None, None)
    part = {s: decoded[s] for s in keep}
    v._chain(part, MAIN)  # the core's rule
    v._links(part, follow)  # completeness of a --follow-links bundle
    if selection is not None:
        v._selection(MAIN)
    return report.errors


def test_genuine_links_and_chain_starts_pass() -> None:
    decoded = chain()
    assert errors(decoded, [0, 1, 2, 3], follow=True) == []
    assert errors(decoded, [2]) == []  # target outside a plain selection: nothing to compare


def _link(field: str, value: Any):  # type: ignore[no-untyped-def]
    def mutate(entry: dict[str, Any]) -> None:
        entry["resolved_links"][0][field] = value
    return mutate


@pytest.mark.parametrize("mutate,expected", [
    (_link("entry_hash", bytes(32)), "different entry_hash"),
    (_link("seq", 0), "names seq 0, but that event is at seq 1"),
    (_link("seq", 5), "names no earlier entry"),
    (_link("seq", None), "names no earlier entry"),
    (_link("status", "bogus"), "unknown status"),
    (_link("event_id", "another-event"), "one by one"),
])
def test_tampered_cross_agent_links_are_rejected(mutate, expected: str) -> None:
    decoded = chain(mutate_link=mutate)
    found = errors(decoded, [0, 1, 2])
    assert [e["check"] for e in found] == ["links"] and expected in found[0]["detail"], found


def test_a_follow_links_bundle_must_hold_every_link_target() -> None:
    decoded = chain()
    found = errors(decoded, [0, 2], follow=True)  # researcher (1), writer's target, left out
    assert [e["check"] for e in found] == ["links"] and "not in this --follow-links bundle" in found[0]["detail"]
    assert errors(decoded, [0, 2], follow=False) == []


def test_chain_starts_must_be_zero() -> None:
    decoded = chain(mutate_first=lambda e: e.update(prev_hash=b"\x01" * 32, agent_prev_hash=b"\x02" * 32))
    details = [e["detail"] for e in errors(decoded, [0])]
    assert any("entry 0: prev_hash is not 32 zero bytes" in d for d in details)
    assert any("agent_prev_hash of planner's first entry" in d for d in details)


SELECTION = {"selection": {"agents": ["writer"], "sessions": [], "action_types": [], "since": None, "until": None,
                           "seq_from": None, "seq_to": None, "follow_links": True},
             "redacted_payloads": False, "entries": [0, 1, 2], "origin": MAIN.origin,
             "exported_at": "2026-12-05T00:00:00+00:00", "exporter": "ledgerstream test"}


@pytest.mark.parametrize("change,expected", [
    (lambda d: d.update(extra=1), "fields must be exactly"),
    (lambda d: d["selection"].update(extra=1), "'selection' must have exactly"),
    (lambda d: d.update(entries=[0, 1]), "'entries' is not the list"),
    (lambda d: d.update(origin="elsewhere"), "'origin'"),
    (lambda d: d["selection"].update(follow_links="yes"), "'follow_links' is not a boolean"),
])
def test_selection_json_is_exact(change, expected: str) -> None:
    decoded = chain()
    assert errors(decoded, [0, 1, 2], selection=SELECTION) == []
    doc = {**SELECTION, "selection": dict(SELECTION["selection"])}
    change(doc)
    found = [e for e in errors(decoded, [0, 1, 2], selection=doc) if e["check"] == "selection"]
    assert found and expected in found[0]["detail"], found



def test_a_link_into_a_one_entry_gap_is_checked_against_the_hash_its_successor_names() -> None:
    """Bundle [0, 2]: seq 1 (the writer's link target) is missing, but seq 2's prev_hash names
    its hash, so the link's entry_hash is still compared (the core once called every such link
    a link_mismatch, which kept verify-bundle on its own copy of the rule)."""
    assert errors(chain(), [0, 2]) == []
    decoded = chain(mutate_link=_link("entry_hash", bytes(32)))
    found = errors(decoded, [0, 2])
    assert [e["check"] for e in found] == ["links"] and "different entry_hash" in found[0]["detail"], found
