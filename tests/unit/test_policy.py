"""Policies: first match wins, deny is recorded and raised before the action runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledgerstream.core.wire import codec
from ledgerstream.core.errors import ConfigError
from ledgerstream.producers.errors import PolicyDenied
from ledgerstream.producers.ledger import Ledger
from ledgerstream.producers.policy import Policy, Rule
from ledgerstream.producers.spool import Spool

pytestmark = pytest.mark.unit

RULES = [Rule("data:delete:audit*", "allow", "audit retention job"),
         Rule("data:delete:*", "deny", "deletions need a human"),
         Rule("tool:shell", "deny")]


def offline(tmp_path: Path, **options) -> Ledger:
    return Ledger("agent-p", spool_dir=tmp_path / "spool", **options)


def recorded(ledger: Ledger) -> list[dict]:
    ledger.close()
    spool = Spool(ledger._sender.spool.path)
    try:
        return [codec.decode(body, expect="ActionEvent")[1] for body in spool.records()]
    finally:
        spool.close()


def test_first_match_wins_and_default():
    policy = Policy(RULES)
    assert policy.evaluate("data:delete:audit_2023").decision == "allow"
    denied = policy.evaluate("data:delete:users")
    assert (denied.decision, denied.rule, denied.reason) == ("deny", "data:delete:*", "deletions need a human")
    assert policy.evaluate("data:read:users").decision == "allow"
    assert policy.evaluate("data:read:users").rule is None
    assert Policy(RULES, default="deny").evaluate("tool:search").decision == "deny"
    assert policy.evaluate("tool:shell:rm").decision == "allow", "globs are anchored: tool:shell only"


def test_bad_policies_fail_at_load():
    with pytest.raises(ConfigError):
        Rule("x:*", "block")
    with pytest.raises(ConfigError):
        Policy([{"match": "payments:*", "decision": "require_approval"}])  # no approvers configured
    with pytest.raises(ConfigError):
        Policy.from_dict({"rules": [], "unknown": 1})
    with pytest.raises(ConfigError):
        Policy([{"match": "x", "decision": "deny", "typo": 1}])


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_policy_files(tmp_path, suffix):
    data = {"default": "allow", "rules": [{"match": "data:delete:*", "decision": "deny", "reason": "no"}]}
    path = tmp_path / f"policy{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        path.write_text("default: allow\nrules:\n  - match: 'data:delete:*'\n    decision: deny\n    reason: 'no'\n")
    policy = Policy.from_file(path)
    assert policy.evaluate("data:delete:x").decision == "deny"
    led = offline(tmp_path, policy=str(path))
    with pytest.raises(PolicyDenied):
        led.emit("data:delete:x", {})
    led.close()


def test_denied_emit_is_recorded_and_raised(tmp_path):
    led = offline(tmp_path, policy=Policy(RULES))
    with pytest.raises(PolicyDenied) as info:
        led.emit("data:delete:users", {"where": "all"})
    led.emit("data:read:users", {})
    denied, allowed = recorded(led)
    assert info.value.event_id == denied["event_id"] and info.value.rule == "data:delete:*"
    assert denied["policy"] == {"decision": "deny", "rule": "data:delete:*", "reason": "deletions need a human"}
    assert json.loads(denied["payload"]) == {"where": "all"}
    assert allowed["policy"] == {"decision": "allow", "rule": None, "reason": "default"}


def test_decorated_action_is_blocked_before_it_runs(tmp_path):
    led = offline(tmp_path, policy=Policy(RULES))
    ran = []

    @led.action("data:delete:users")
    def delete(table):
        ran.append(table)

    @led.action("data:delete:audit_old")
    def prune():
        ran.append("audit")

    with pytest.raises(PolicyDenied):
        delete("users")
    prune()
    assert ran == ["audit"], "the denied function must not run"
    denied, allowed = recorded(led)
    assert denied["policy"]["decision"] == "deny" and json.loads(denied["payload"]) == {"args": {"table": "users"}}
    assert allowed["policy"] == {"decision": "allow", "rule": "data:delete:audit*", "reason": "audit retention job"}


def test_no_policy_records_no_decision(tmp_path):
    led = offline(tmp_path)
    led.emit("data:delete:users", {})
    (rec,) = recorded(led)
    assert rec["policy"] is None
