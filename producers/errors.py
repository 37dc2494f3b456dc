"""Exceptions the producer library raises to the agent on purpose.

Transport trouble never raises (events go to the spool instead); only caller mistakes
(bad action types, unserialisable payloads) and policy outcomes reach the agent.
"""
from __future__ import annotations

from ledgerstream.core.errors import LedgerstreamError


class PolicyDenied(LedgerstreamError):
    """A policy stopped the action before it ran; the attempt itself is in the ledger.

    ``decision`` is what was recorded (``deny``, ``approval_timeout``, ``approval_denied``),
    ``event_id`` names the recorded attempt, ``rule`` the pattern that matched.
    """

    decision = "deny"

    def __init__(self, action_type: str, *, event_id: str, rule: str | None, reason: str | None,
                 decision: str | None = None) -> None:
        self.action_type = action_type
        self.event_id = event_id
        self.rule = rule
        self.reason = reason
        if decision is not None:
            self.decision = decision
        detail = f" ({reason})" if reason else ""
        super().__init__(f"{action_type}: {self.decision} by rule {rule!r}{detail}; recorded as event {event_id}")


class ApprovalTimeout(PolicyDenied):
    """Fewer than m valid approvals arrived before the deadline."""

    decision = "approval_timeout"


class ApprovalDenied(PolicyDenied):
    """Enough approvers rejected the request that m approvals can no longer be reached."""

    decision = "approval_denied"
