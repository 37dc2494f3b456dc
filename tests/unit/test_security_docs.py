"""docs/security.md's ACL table is the one the dev stack and compose's init job apply."""
from __future__ import annotations

from pathlib import Path

from ledgerstream.core.config import Topics
from ledgerstream.stack.security import acl_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def test_the_documented_acls_are_the_applied_ones() -> None:
    text = DOC.read_text()
    documented = text.split("<!-- acl-table:start -->\n", 1)[1].split("<!-- acl-table:end -->", 1)[0]
    assert documented == acl_table(Topics.with_prefix("ledgerstream."))


def test_only_the_signer_may_write_the_ledger() -> None:
    from ledgerstream.stack.security import acl_rules

    topics = Topics.with_prefix("ledgerstream.")
    writers = {(role, name) for role, rtype, _, name, op in acl_rules(topics) if rtype == "TOPIC" and op == "WRITE"}
    assert {role for role, name in writers if name in (topics.entries, topics.deadletter, topics.signer_state)} == {"signer"}
    # the witness client adds cosignatures next to the signer's checkpoints (docs/witnesses.md)
    assert {role for role, name in writers if name == topics.checkpoints} == {"signer", "witness"}
    assert {name for role, name in writers if role == "witness"} == {topics.checkpoints}
    # the signer raises one kind itself, snapshot_rejected, on its own start (docs/alerts.md)
    assert {role for role, name in writers if name == topics.alerts} == {"verifier", "signer"}
    assert {role for role, name in writers if name == topics.actions} == {"producer"}
