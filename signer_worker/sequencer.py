"""Turns one raw ``actions`` record into a ledger entry, a duplicate, or a dead letter.

Pure apart from the clock and the signing key: no Kafka here, so every rule can be
unit-tested and the transactional loop stays the textbook one.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import time
from typing import Any, NamedTuple

from ledgerstream.core import records
from ledgerstream.core.wire import avro_fast, codec
from ledgerstream.core.errors import DecodeError
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.signer_worker.state import NEW_AGENT, LedgerState

log = logging.getLogger("ledgerstream.signer")


class Source(NamedTuple):  # a NamedTuple: one is made per input record, and these are cheap
    topic: str
    partition: int
    offset: int
    key: bytes | None = None


class Outcome(NamedTuple):  # a NamedTuple: one is made per action (a frozen dataclass took 2.3x as long)
    """Exactly one of: an entry to append, a dead letter, or a harmless duplicate."""

    entry: dict[str, Any] | None = None
    dead_letter: dict[str, Any] | None = None
    duplicate_of: int | None = None
    #: the action's own ActionEvent body bytes when they are canonical, so the entry's
    #: LedgerEntry record can be written by splicing them in (:meth:`Sequencer.encode`)
    action_body: bytes | None = None
    #: with ``defer_signing``: what the entry's signature must cover; the caller signs it
    #: and sets ``entry["signature"]`` before encoding the entry
    signing_message: bytes | None = None


class _NotCanonicalisable(Exception):
    """A valid-looking action whose entry hash cannot be computed (records.entry_hash raised).
    Dead-lettered rather than raised: one such record must not crash-loop the signer."""


def now_us() -> int:
    return time.time_ns() // 1000


#: bytes of a rejected record kept in its dead letter; the rest is represented by its length
#: and SHA-256, so a dead letter always fits the broker's limits, however large the input was
DEAD_LETTER_KEEP = 64 * 1024


def dead_letter(reason: str, detail: str, raw: bytes, src: Source) -> Outcome:
    return Outcome(dead_letter={
        "reason": reason, "detail": detail[:2000], "original": raw[:DEAD_LETTER_KEEP],
        "original_key": src.key[:DEAD_LETTER_KEEP] if src.key is not None else None,
        "source": {"topic": src.topic, "partition": src.partition, "offset": src.offset},
        "received_at": now_us(), "original_size": len(raw), "original_sha256": hashlib.sha256(raw).digest()})


@functools.cache
def typed_hash_agrees() -> bool:
    """Once per process: records.entry_hash_typed gives records.entry_hash's bytes on a
    sample entry that uses every field (belt and braces: the test suite checks this on
    random entries). If a future change to the entry hash view is not mirrored in the typed
    writer, the signer notices here and stays on records.entry_hash."""
    action = {
        "event_id": "e-1", "agent_id": "agent \u00e9\"\n", "session_id": "s", "action_type": "tool:x",
        "payload": None, "payload_salt": None, "payload_hash": bytes(range(32)), "occurred_at": 1_700_000_000_000_000,
        "links": [{"agent_id": "a", "event_id": "b", "relation": "caused_by"}],
        "policy": {"decision": "approved", "rule": None, "reason": "r"},
        "approvals": [{"request_id": "q", "approver_id": "p", "key_id": "k", "decision": "approve",
                       "approved_at": 5, "signature": b"\x01\x02"}],
        "trace": {"trace_id": "t", "span_id": "u", "parent_span_id": None},
        "producer": {"library": "l", "version": "v", "host": "h", "pid": 7, "adapter": None}, "offline": True,
    }
    entry = {
        "spec_version": records.SPEC_VERSION, "seq": 3, "prev_hash": bytes(32), "entry_hash": records.ZERO_HASH,
        "action": action, "received_at": 1_700_000_000_000_001, "source": {"topic": "t", "partition": 1, "offset": 2},
        "agent_seq": 0, "agent_prev_hash": bytes(32),
        "resolved_links": [{"agent_id": "a", "event_id": "b", "status": "resolved", "seq": 1, "entry_hash": bytes(32)},
                           {"agent_id": "c", "event_id": "d", "status": "pending", "seq": None, "entry_hash": None}],
        "key_id": "ab" * 32, "signature": None, "timestamp_token": None,
    }
    if records.entry_hash_typed(entry) == records.entry_hash(entry):
        return True
    log.error("records.entry_hash_typed disagrees with records.entry_hash; using entry_hash only")
    return False


def _commits(action: dict[str, Any]) -> bool:
    """The payload commitment holds (or there is no payload): the one rule of
    records.validate_action that avro_fast.read_valid_action leaves to its caller."""
    payload = action["payload"]
    return payload is None or records.payload_commitment(action["payload_salt"], payload) == action["payload_hash"]


class Sequencer:
    """Applies the ledger rules (docs/spec.md) to incoming actions, in order."""

    def __init__(self, state: LedgerState, key: PrivateKey, *, signing_mode: str = "entry",
                 max_record_bytes: int = 1024 * 1024, defer_signing: bool = False) -> None:
        """``defer_signing`` (entry mode): leave ``entry["signature"]`` None and return the
        signing message in the outcome instead, for the caller to sign (signing.py)."""
        self.state = state
        self.key = key
        self.key_id = key.public_key().key_id
        self.signing_mode = signing_mode
        self.max_record_bytes = max_record_bytes
        self.defer_signing = defer_signing and signing_mode == "entry"
        self.typed_hash = typed_hash_agrees()
        self.duplicates = 0

    @staticmethod
    def encode(outcome: Outcome) -> bytes:
        """The entry's LedgerEntry record: ``codec.encode("LedgerEntry", entry)``, byte for
        byte, written by splicing the action's original body bytes when they are canonical."""
        assert outcome.entry is not None
        return avro_fast.encode_ledger_entry(outcome.entry, outcome.action_body)

    def seal(self, raw: bytes | None, topic: str, partition: int, offset: int) -> tuple[bytes, bytes] | None:
        """:meth:`process` then :meth:`encode` for the common action in checkpoint mode, in
        fewer steps: ``(the entry's LedgerEntry record, its key)``, the state advanced as
        process would. None, with the state untouched, for anything else (an action the
        sealed reader does not prove, or already sequenced; entry mode): the
        caller then calls :meth:`process`, which decides it. Same bytes as process + encode
        (tests/unit/test_signer_fast_path.py)."""
        if self.signing_mode != "checkpoint" or type(raw) is not bytes or len(raw) > self.max_record_bytes:
            return None
        fast = avro_fast.read_sealable_action(raw)
        if fast is None:
            return None
        event_id, agent_id, action_type, payload_hash, text, links = fast
        st = self.state
        if st.events.get(event_id) is not None:
            return None
        agent_seq, agent_prev = st.agents.get(agent_id, NEW_AGENT)
        seq = st.next_seq
        sealed = avro_fast.seal_entry(raw, text, seq, st.head, now_us(), topic, partition, offset, agent_seq,
                                      agent_prev, [self._resolve(*link) for link in links] if links else None,
                                      self.key_id)
        if sealed is None:
            return None
        h, leaf, record = sealed
        st.apply_fields(seq, h, agent_id, agent_seq, event_id, payload_hash, action_type, leaf)
        return record, agent_id.encode()

    def process(self, raw: bytes | None, src: Source) -> Outcome:
        raw = raw or b""
        if len(raw) > self.max_record_bytes:
            return dead_letter("oversized", f"{len(raw)} bytes > limit {self.max_record_bytes}", raw, src)
        fast = avro_fast.read_valid_action(raw)  # proven valid but for the commitment, else None
        if fast is not None and _commits(fast[0]):
            action, action_text = fast
            body = raw[codec.HEADER_LEN:]
        else:  # the reference path: decode, validate_action, and the reason when it fails
            action_text = None
            action = avro_fast.read_action(raw)  # canonical records of the current schema, else None
            body = None
            if action is None:
                try:
                    _, action = codec.decode(raw, expect="ActionEvent")
                except DecodeError as exc:
                    return dead_letter(exc.reason, str(exc), raw, src)
            else:
                body = raw[codec.HEADER_LEN:]
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
            # read_action's records have exactly the schema's types: the typed hash applies
            entry = self._entry(action, src, typed=body is not None and self.typed_hash, action_text=action_text)
        except _NotCanonicalisable as exc:
            return dead_letter("invalid_field", str(exc), raw, src)
        if self.defer_signing:
            return Outcome(entry, None, None, body, records.entry_signing_message(entry["entry_hash"]))
        return Outcome(entry, None, None, body)

    def _entry(self, action: dict[str, Any], src: Source, typed: bool = False,
               action_text: bytes | None = None) -> dict[str, Any]:
        """``action_text``: the action's JCS text from avro_fast.read_valid_action."""
        st = self.state
        agent_seq, agent_prev = st.agents.get(action["agent_id"], NEW_AGENT)
        links = action.get("links")
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
            "resolved_links": [self._resolve(link["agent_id"], link["event_id"]) for link in links] if links else [],
            "key_id": self.key_id,
            "signature": None,
            "timestamp_token": None,
        }
        preimage = None if action_text is None else avro_fast.entry_hash_input(entry, action_text)
        try:
            if preimage is not None:
                h = hashlib.sha256(preimage).digest()
            else:
                h = records.entry_hash_typed(entry) if typed else records.entry_hash(entry)
        except (ValueError, TypeError) as exc:  # nothing applied yet: the state is untouched
            raise _NotCanonicalisable(f"action cannot be hashed (RFC 8785): {exc}") from exc
        entry["entry_hash"] = h
        if self.signing_mode == "entry" and not self.defer_signing:
            entry["signature"] = self.key.sign(records.entry_signing_message(h))
        st.apply(entry)
        return entry

    def _resolve(self, agent_id: str, event_id: str) -> dict[str, Any]:
        """A link's ``resolved_links`` item: resolved when the window holds that agent's event."""
        known = self.state.events.get(event_id)
        if known is not None and known.agent_id == agent_id:
            return {"agent_id": agent_id, "event_id": event_id, "status": "resolved",
                    "seq": known.seq, "entry_hash": known.entry_hash}
        return {"agent_id": agent_id, "event_id": event_id, "status": "pending", "seq": None, "entry_hash": None}
