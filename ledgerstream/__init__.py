"""ledgerstream: a tamper-evident, append-only ledger of AI-agent actions on Apache Kafka.

Quick start::

    import ledgerstream
    ledger = ledgerstream.connect(agent_id="billing-bot")
    ledger.emit("tool:search", {"query": "overdue invoices"})

The public API is loaded lazily (module ``__getattr__``), so ``import ledgerstream`` costs
almost nothing and never pulls in Kafka, faust or a web stack by itself.
"""
from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_LAZY = {
    "connect": "ledgerstream.producers.ledger",
    "Ledger": "ledgerstream.producers.ledger",
    "Session": "ledgerstream.producers.ledger",
    "PolicyDenied": "ledgerstream.producers.errors",
    "ApprovalTimeout": "ledgerstream.producers.errors",
    "ApprovalDenied": "ledgerstream.producers.errors",
    "Policy": "ledgerstream.producers.policy",
    "Rule": "ledgerstream.producers.policy",
    "Link": "ledgerstream.producers.context",
    "uuid7": "ledgerstream.producers.uuid7",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ledgerstream' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
