"""m-of-n approvals: the approver configuration and the one check both sides run.

The agent (``ledgerstream.producers.approvals``) collects approvals with it before an action
runs; verifiers re-run :func:`verify_approvals` on every ledger entry whose action carries
approvals (alert kind ``approval_invalid``). Both read the approver set from the same
policy file section (docs/approvals.md)::

    approvals:
      m: 2
      timeout: 300            # seconds an agent waits (agent side only)
      approvers:
        alice: keys/alice.pub.pem     # relative paths are relative to the file
        bob:   keys/bob.pub.pem
        carol: keys/carol.pub.pem
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ledgerstream.core import records
from ledgerstream.core.errors import ConfigError, InvalidSignature, VerificationError
from ledgerstream.core.mldsa import PublicKey, load_public_key

APPROVE, REJECT = "approve", "reject"
DEFAULT_TIMEOUT = 300.0
#: policy decisions that may carry approvals, and the one that needs m of them
APPROVAL_DECISIONS = ("approved", "approval_denied", "approval_timeout")


class ApprovalInvalid(VerificationError):
    kind = "approval_invalid"


@dataclass(frozen=True)
class ApproverSet:
    """n approvers (id -> ML-DSA-65 public key) of which m must approve."""

    approvers: Mapping[str, PublicKey]
    m: int
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not self.approvers:
            raise ConfigError("an approver set needs at least one approver")
        if not isinstance(self.m, int) or not 1 <= self.m <= len(self.approvers):
            raise ConfigError(f"approvals m must be between 1 and {len(self.approvers)} (n), got {self.m!r}")
        if self.timeout <= 0:
            raise ConfigError("approvals timeout must be positive")

    @classmethod
    def from_config(cls, section: Mapping[str, Any], base_dir: str | os.PathLike[str] = ".") -> "ApproverSet":
        """Build from the ``approvals`` section of a policy file (keys are PEM file paths)."""
        approvers_cfg = section.get("approvers")
        if not isinstance(approvers_cfg, Mapping) or not approvers_cfg:
            raise ConfigError("approvals.approvers must map approver ids to public key PEM files")
        keys: dict[str, PublicKey] = {}
        for approver_id, key_path in approvers_cfg.items():
            try:
                records.validate_identifier("approver id", approver_id)
            except ValueError as exc:
                raise ConfigError(f"approvals.approvers: {exc}") from exc
            path = Path(base_dir, os.path.expanduser(str(key_path)))
            try:
                keys[str(approver_id)] = load_public_key(path.read_bytes())
            except OSError as exc:
                raise ConfigError(f"approver {approver_id}: cannot read public key {path}: {exc.strerror or exc}") from exc
        m = section.get("m", len(keys))
        return cls(keys, m, float(section.get("timeout", DEFAULT_TIMEOUT)))


def approval_message_for(action: Mapping[str, Any], approval: Mapping[str, Any]) -> bytes:
    """The bytes approver ``approval`` signed for ``action`` (records.approval_message)."""
    return records.approval_message(
        request_id=approval["request_id"], approver_id=approval["approver_id"],
        decision=approval["decision"], approved_at=approval["approved_at"],
        event_id=action["event_id"], agent_id=action["agent_id"],
        action_type=action["action_type"], payload_hash=action["payload_hash"])


def verify_approval(action: Mapping[str, Any], approval: Mapping[str, Any],
                    approvers: Mapping[str, PublicKey]) -> None:
    """One approval: a configured approver, its key, a valid signature over this event."""
    approver_id = approval.get("approver_id")
    key = approvers.get(approver_id)
    if key is None:
        raise ApprovalInvalid(f"approval by unknown approver {approver_id!r}",
                              event_id=action.get("event_id"), approver_id=approver_id)
    if approval.get("key_id") != key.key_id:
        raise ApprovalInvalid(f"approval by {approver_id} names key {approval.get('key_id')}, "
                              f"configured key is {key.key_id}", event_id=action.get("event_id"),
                              expected=key.key_id, got=approval.get("key_id"))
    if approval.get("decision") not in (APPROVE, REJECT):
        raise ApprovalInvalid(f"approval decision must be approve or reject, got {approval.get('decision')!r}",
                              event_id=action.get("event_id"), approver_id=approver_id)
    try:
        key.verify(approval["signature"], approval_message_for(action, approval))
    except InvalidSignature as exc:
        raise ApprovalInvalid(f"approval signature by {approver_id} does not verify for event "
                              f"{action.get('event_id')}", event_id=action.get("event_id"),
                              approver_id=approver_id, **exc.evidence) from exc


def verify_approvals(action: Mapping[str, Any], approvers: Mapping[str, PublicKey], m: int) -> None:
    """Check the approvals an ActionEvent carries; raise :class:`ApprovalInvalid` on any problem.

    1. Every approval is by a configured approver, under that approver's key, with a valid
       ML-DSA-65 signature over ``records.approval_message`` of this very event.
    2. All approvals answer one request, and no approver appears twice.
    3. Approvals only travel with an approval decision.
    4. A decision ``approved`` carries at least ``m`` approvals with decision ``approve``.
    """
    if not 1 <= m <= len(approvers):
        raise ValueError(f"m must be between 1 and the number of approvers ({len(approvers)}), got {m}")
    approvals = list(action.get("approvals") or [])
    decision = (action.get("policy") or {}).get("decision")
    event_id = action.get("event_id")
    # 1.
    for approval in approvals:
        verify_approval(action, approval, approvers)
    # 2.
    request_ids = {a["request_id"] for a in approvals}
    if len(request_ids) > 1:
        raise ApprovalInvalid("approvals answer different requests", event_id=event_id,
                              request_ids=sorted(request_ids))
    seen = [a["approver_id"] for a in approvals]
    if len(seen) != len(set(seen)):
        raise ApprovalInvalid("an approver appears more than once", event_id=event_id, approvers=seen)
    # 3.
    if approvals and decision not in APPROVAL_DECISIONS:
        raise ApprovalInvalid(f"approvals travel with policy decision {decision!r}", event_id=event_id)
    # 4.
    if decision == "approved":
        approved = sum(1 for a in approvals if a["decision"] == APPROVE)
        if approved < m:
            raise ApprovalInvalid(f"decision 'approved' with {approved} valid approvals, {m} required",
                                  event_id=event_id, approvals=approved, required=m)
