"""Policy rules evaluated before an action runs: ``deny``, ``require_approval`` or ``allow``
for glob patterns over action types (``data:delete:*``); the first matching rule wins.

Rules come from code (``Policy([Rule("data:delete:*", "deny")])``) or from a YAML/JSON file::

    default: allow                  # when no rule matches
    rules:
      - match: "data:delete:*"
        decision: deny
        reason: deletions are done by humans
      - match: "payments:*"
        decision: require_approval
    approvals: {m: 2, timeout: 300, approvers: {alice: alice.pub.pem, bob: bob.pub.pem}}

Patterns use shell globbing (``fnmatch``, case-sensitive): ``*`` matches any characters,
colons included, ``?`` one character, ``[abc]`` a set.
"""
from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ledgerstream.core.errors import ConfigError

if TYPE_CHECKING:
    from ledgerstream.core.approvals import ApproverSet

ALLOW, DENY, REQUIRE_APPROVAL = "allow", "deny", "require_approval"
DECISIONS = (ALLOW, DENY, REQUIRE_APPROVAL)
MAX_POLICY_BYTES = 4 << 20  # a policy is rules by hand, a few KB; a larger file is a mistake, not a policy


@dataclass(frozen=True)
class Rule:
    match: str
    decision: str
    reason: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.match, str) or not self.match:
            raise ConfigError("a policy rule needs a non-empty 'match' pattern")
        if self.decision not in DECISIONS:
            raise ConfigError(f"rule {self.match!r}: decision must be one of {', '.join(DECISIONS)}, "
                              f"got {self.decision!r}")

    def matches(self, action_type: str) -> bool:
        return fnmatch.fnmatchcase(action_type, self.match)


@dataclass(frozen=True)
class Verdict:
    """The outcome for one action type: the decision, the rule that gave it, and why."""

    decision: str
    rule: str | None
    reason: str | None

    def as_record(self, decision: str | None = None, reason: str | None = None) -> dict[str, Any]:
        return {"decision": decision or self.decision, "rule": self.rule, "reason": reason or self.reason}


class Policy:
    """An ordered rule list plus a default decision and (for approvals) the approver set."""

    def __init__(self, rules: Iterable[Rule | Mapping[str, Any]] = (), *, default: str = ALLOW,
                 approvers: ApproverSet | None = None) -> None:
        self.rules = tuple(r if isinstance(r, Rule) else _rule(r) for r in rules)
        if default not in (ALLOW, DENY):
            raise ConfigError(f"policy default must be allow or deny, got {default!r}")
        self.default = default
        self.approvers = approvers
        needing = [r.match for r in self.rules if r.decision == REQUIRE_APPROVAL]
        if needing and approvers is None:
            raise ConfigError(f"rules {needing} require approval but the policy has no 'approvals' section")

    def evaluate(self, action_type: str) -> Verdict:
        for rule in self.rules:
            if rule.matches(action_type):
                return Verdict(rule.decision, rule.match, rule.reason)
        return Verdict(self.default, None, "default")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | os.PathLike[str] = ".") -> "Policy":
        if not isinstance(data, Mapping):
            raise ConfigError("a policy must be a mapping with 'rules' (and optionally 'default', 'approvals')")
        unknown = set(data) - {"rules", "default", "approvals"}
        if unknown:
            raise ConfigError(f"unknown policy keys: {sorted(unknown)}")
        approvals = data.get("approvals")
        if approvals:
            from ledgerstream.core.approvals import ApproverSet
        return cls(data.get("rules") or (), default=data.get("default", ALLOW),
                   approvers=ApproverSet.from_config(approvals, base_dir) if approvals else None)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "Policy":
        """Load a ``.yaml``/``.yml`` (needs PyYAML) or ``.json`` policy file."""
        path = Path(path)
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_POLICY_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read policy file {path}: {exc.strerror or exc}") from exc
        if len(raw) > MAX_POLICY_BYTES:
            raise ConfigError(f"policy file {path} is larger than {MAX_POLICY_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"policy file {path} is not UTF-8: {exc}") from exc
        return cls.from_dict(load_mapping(text, path), base_dir=path.parent)


def load_mapping(text: str, path: Path) -> Any:
    """Parse policy text as YAML or JSON by file suffix."""
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ConfigError("YAML policy files need PyYAML (pip install pyyaml), or use JSON") from exc
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from exc


def _rule(data: Mapping[str, Any]) -> Rule:
    if not isinstance(data, Mapping):
        raise ConfigError(f"a policy rule must be a mapping, got {data!r}")
    unknown = set(data) - {"match", "decision", "reason"}
    if unknown:
        raise ConfigError(f"unknown keys in policy rule {dict(data)}: {sorted(unknown)}")
    return Rule(data.get("match"), data.get("decision"), data.get("reason"))


def as_policy(value: "Policy | str | os.PathLike[str] | Mapping[str, Any] | Iterable[Rule] | None") -> Policy | None:
    """What ``connect(policy=...)`` accepts: a Policy, a file path, a dict or a list of rules."""
    if value is None or isinstance(value, Policy):
        return value
    if isinstance(value, (str, os.PathLike)):
        return Policy.from_file(value)
    if isinstance(value, Mapping):
        return Policy.from_dict(value)
    return Policy(value)
