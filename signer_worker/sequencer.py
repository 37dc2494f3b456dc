"""Turns one raw ``actions`` record into a ledger entry, a duplicate, or a dead letter.

Pure apart from the clock and the signing key: no Kafka here, so every rule can be
unit-tested and the transactional loop stays the textbook one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ledgerstream.core import codec, records
from ledgerstream.core.errors import DecodeError
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.signer_worker.state import LedgerState


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    produced_at_ms: int | None = None  # Kafka record timestamp, for latency metrics


@dataclass(frozen=True)
class Outcome:
    """Exactly one of: an entry to append, a dead letter, or a harmless duplicate."""

    entry: dict[str, Any] | None = None
    dead_letter: dict[str, Any] | None = None
    duplicate_of: int | None = None


class _NotCanonicalisable(Exception):
    """A valid-looking action whose entry hash cannot be computed (records.entry_hash raised).
    Dead-lettered rather than raised: one such record must not crash-loop the signer."""


def now_us() -> int:
    return time.time_ns() // 1000


def dead_letter(reason: str, detail: str, raw: bytes, src: Source) -> Outcome:
    return Outcome(dead_letter={
        "reason": reason, "detail": detail[:2000], "original": raw, "original_key": src.key,
        "source": {"topic": src.topic, "partition": src.partition, "offset": src.offset},
        "received_at": now_us()})


class Sequencer:
    """Applies the ledger rules (docs/spec.md) to incoming actions, in order."""

    def __init__(self, state: LedgerState, key: PrivateKey, *, signing_mode: str = "entry",
                 max_record_bytes: int = 1024 * 1024) -> None:
        self.state = state
        self.key = key
        self.key_id = key.public_key().key_id
        self.signing_mode = signing_mode
        self.max_record_bytes = max_record_bytes
        self.duplicates = 0

    def process(self, raw: bytes | None, src: Source) -> Outcome:
        raw = raw or b""
        if len(raw) > self.max_record_bytes:
            return dead_letter("oversized", f"{len(raw)} bytes > limit {self.max_record_bytes}", raw, src)
        try:
            _, action = codec.decode(raw, expect="ActionEvent")
        except DecodeError as exc:
            return dead_letter(exc.reason, str(exc), raw, src)
        try:
            records.validate_action(action)
        except (ValueError, TypeError, KeyError) as exc:
            return dead_letter("invalid_field", str(exc), raw, src)
        known = self.state.events.get(action["event_id"])
        if known is not None:
            if (known.agent_id, known.payload_hash, known.action_type) == (
                    action["agent_id"], bytes(action["payload_hash"]), action["action_type"]):
                self.duplicates += 1
                return Outcome(duplicate_of=known.seq)
            return dead_letter("duplicate_conflict",
                               f"event_id {action['event_id']} already sequenced at seq {known.seq} "
                               "with different content", raw, src)
        try:
            return Outcome(entry=self._entry(action, src))
        except _NotCanonicalisable as exc:
            return dead_letter("invalid_field", str(exc), raw, src)

    def _entry(self, action: dict[str, Any], src: Source) -> dict[str, Any]:
        st = self.state
        agent_seq, agent_prev = st.agent_position(action["agent_id"])
        entry: dict[str, Any] = {
            "spec_version": records.SPEC_VERSION,
            "seq": st.next_seq,
            "prev_hash": st.head,
            "entry_hash": records.ZERO_HASH,
            "action": action,
            "received_at": now_us(),
            "source": {"topic": src.topic, "partition": src.partition, "offset": src.offset},
            "agent_seq": agent_seq,
            "agent_prev_hash": agent_prev,
            "resolved_links": [self._resolve(link) for link in action.get("links") or []],
            "key_id": self.key_id,
            "signature": None,
            "timestamp_token": None,
        }
        try:
            h = records.entry_hash(entry)
        except (ValueError, TypeError) as exc:  # nothing applied yet: the state is untouched
            raise _NotCanonicalisable(f"action cannot be hashed (RFC 8785): {exc}") from exc
        entry["entry_hash"] = h
        if self.signing_mode == "entry":
            entry["signature"] = self.key.sign(records.entry_signing_message(h))
        st.apply(entry)
        return entry

    def _resolve(self, link: dict[str, Any]) -> dict[str, Any]:
        known = self.state.events.get(link["event_id"])
        if known is not None and known.agent_id == link["agent_id"]:
            return {"agent_id": link["agent_id"], "event_id": link["event_id"], "status": "resolved",
                    "seq": known.seq, "entry_hash": known.entry_hash}
        return {"agent_id": link["agent_id"], "event_id": link["event_id"], "status": "pending",
                "seq": None, "entry_hash": None}
