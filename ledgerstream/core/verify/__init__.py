"""Incremental verification of a ledger: the one checker every verifier runs.

Pure code: the caller feeds raw record bytes (with their offsets) from ``entries`` and
``checkpoints`` in topic order and gets :class:`Finding` objects back; no Kafka, no
files, no clock. The faust verifier workers, ``ledgerstream verify`` and the offline tools
all run this class, so they agree on what is wrong and how it is named (docs/alerts.md).

Verification steps (docs/spec.md section 9), labelled ``[n]`` in the code:

  [1] decode every record (Avro single object)            -> undecodable
  [2] entry_hash recomputes, payload matches its commitment -> hash_mismatch
  [3] the key is trusted and the signature verifies       -> unknown_key, bad_signature
  [4] seq continues, prev_hash links to the previous entry -> gap, duplicate, fork, chain_break
  [5] the per-agent chain continues                       -> agent_chain_break
  [6] checkpoints: signature, body, root, head, consistency -> checkpoint_*
  [7] timestamp tokens verify and do not go backwards     -> timestamp_invalid / _out_of_order
  [8] resolved links name the right entry; pending links resolve in time
                                                          -> link_mismatch, link_dangling
  [9] approvals verify against the configured approvers   -> approval_invalid

One incident gives one finding: a rejected record (steps 1-3) is dropped and the next valid
entry continues the chain; after a gap the next correctly signed entry is adopted as the new
head; a fork is remembered as a *candidate* for the head's seq, and if the following entry
links to the candidate instead of the head, the chain switches to it silently (the fork was
already reported). This is why the newest entry stays *tentative* (verified, not yet
integrated) until the next entry confirms its place.

Modules, one concern each: ``findings`` (taxonomy, Finding, Stats), ``trust`` (keys, TSA CA,
approvers), ``entries`` (the per-entry rule), ``signatures`` (batched step [3]),
``checkpoints`` (one checkpoint record), ``links`` (step [8]'s rule), ``history`` (what is
remembered per entry), ``checker`` (chain state), ``liveness``. Import from here: these names are the public surface.
"""
from __future__ import annotations
from ledgerstream.core.verify.checker import STATE_VERSION, Checker
from ledgerstream.core.verify.checkpoints import CheckedCheckpoint, check_checkpoint_record
from ledgerstream.core.verify.entries import (CheckedEntry, SignatureCheck, check_entry, check_payload, entry_signature_check,
                                              precheck_entry, recompute_entry_hash, settle_signature)
from ledgerstream.core.verify.findings import CHECKPOINTS, ENTRIES, PEERS, REJECTING, SEVERITY, Finding, Kind, Severity, Stats
from ledgerstream.core.verify.history import AgentHead, History, MemoryHistory
from ledgerstream.core.verify.links import (CallGraph, Edge, links_answer_problem, names_earlier_entry,
                                            resolved_link_problem)
from ledgerstream.core.verify.liveness import LivenessSample, StallMonitor
from ledgerstream.core.verify.signatures import (PIPELINE_CHUNK, SWITCH_INTERVAL, SignaturePool, check_entries,
                                                 check_raw_signatures, raw_signature_check)
from ledgerstream.core.verify.entries import carries_approvals
from ledgerstream.core.verify.trust import (CheckerConfig, TrustedKeys, checker_config, find_policy, load_approvers,
                                            tsa_ca)

__all__ = [
    "AgentHead", "History", "MemoryHistory", "CHECKPOINTS", "ENTRIES", "PEERS", "PIPELINE_CHUNK", "REJECTING", "SEVERITY", "STATE_VERSION", "SWITCH_INTERVAL",
    "CallGraph", "CheckedCheckpoint", "CheckedEntry", "Checker", "CheckerConfig", "Edge", "Finding", "Kind",
    "LivenessSample", "Severity", "SignatureCheck", "SignaturePool", "StallMonitor", "Stats", "TrustedKeys",
    "check_checkpoint_record", "check_entries", "check_entry", "check_payload", "entry_signature_check",
    "recompute_entry_hash", "check_raw_signatures", "checker_config",
    "carries_approvals", "find_policy", "load_approvers", "links_answer_problem", "names_earlier_entry", "precheck_entry", "raw_signature_check",
    "resolved_link_problem", "settle_signature", "tsa_ca",
]
