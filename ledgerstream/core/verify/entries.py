"""The per-entry rule, steps [1]-[3], [7] and [9]: what one entries record says on its own,
before any chain state (safe to run on any thread or process)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ledgerstream.core import records
from ledgerstream.core.wire import avro_fast, codec
from ledgerstream.core.errors import DecodeError, InvalidSignature, TimestampError, VerificationError
from ledgerstream.core.mldsa import PublicKey
from ledgerstream.core.timestamp import verify_timestamp
from ledgerstream.core.verify.findings import ENTRIES, Finding, Kind, located, undecodable
from ledgerstream.core.verify.trust import CheckerConfig

@dataclass(frozen=True)
class CheckedEntry:
    """An entries record after the checks that need no chain state (steps 1-3, 7, 9).

    ``rejection`` set: the record is dropped. ``notes``: findings about an entry that is
    still integrated (an invalid per-entry token or approval does not unmake the entry).
    """

    offset: int
    raw: bytes
    entry: dict[str, Any] | None = None
    entry_hash: bytes = b""
    rejection: Finding | None = None
    notes: tuple[Finding, ...] = ()
    signed: bool = False
    approvals_checked: bool = False

    @property
    def seq(self) -> int:
        return int(self.entry["seq"]) if self.entry else -1

    @property
    def agent_id(self) -> str:
        return self.entry["action"]["agent_id"] if self.entry else ""



def entry_located(c: CheckedEntry) -> dict[str, Any]:
    return located(c.offset, c.entry)



#: a signature step [3] still has to check: (key, signature, signed message)
SignatureCheck = tuple[PublicKey, bytes, bytes]


def check_entry(record: tuple[int, bytes], config: CheckerConfig) -> CheckedEntry:
    """Steps [1], [2], [3], per-entry [7] and [9] for one entries record."""
    checked, signature = precheck_entry(record, config)
    if signature is None:
        return checked
    key, sig, message = signature
    return settle_signature(checked, signature, key.verify_many([(sig, message)])[0])


def precheck_entry(record: tuple[int, bytes], config: CheckerConfig) -> tuple[CheckedEntry, SignatureCheck | None]:
    """Everything :func:`check_entry` does except verifying the signature itself, which is
    returned (or None when there is none to check); :func:`settle_signature` finishes."""
    offset, raw = record
    fast = avro_fast.read_entry(raw)  # [1] and [2]'s preimage, compiled; None: not taken there
    if fast is None:
        try:  # [1]
            _, entry = codec.decode(raw, expect="LedgerEntry")
        except DecodeError as exc:
            return CheckedEntry(offset, raw, rejection=undecodable(raw, offset, ENTRIES, exc)), None
    else:
        entry = fast[0]
    try:  # [2]
        computed = recompute_entry_hash(entry, None if fast is None else records.sha256(fast[1]))
        check_payload(entry["action"])
        # [3] the key; the signature itself is left to the caller
        signature = entry_signature_check(entry, computed, config)
    except VerificationError as exc:
        return CheckedEntry(offset, raw, entry,
                            rejection=Finding.from_error(Kind(exc.kind), exc, **located(offset, entry))), None
    notes = []
    token = entry.get("timestamp_token")
    if token is not None and config.tsa_ca is not None:  # [7] per-entry timestamp mode
        try:
            verify_timestamp(bytes(token), computed, config.tsa_ca)
        except TimestampError as exc:
            notes.append(Finding.from_error(Kind.TIMESTAMP_INVALID, exc, **located(offset, entry)))
    checked_approvals = False
    if config.approvers is not None and carries_approvals(entry["action"]):  # [9]
        checked_approvals = True
        try:
            _verify_approvals(entry["action"], config.approvers)
        except VerificationError as exc:
            notes.append(Finding.from_error(Kind.APPROVAL_INVALID, exc, **located(offset, entry)))
    checked = CheckedEntry(offset, raw, entry, computed, None, tuple(notes), signature is not None, checked_approvals)
    return checked, signature


def settle_signature(checked: CheckedEntry, signature: SignatureCheck, valid: bool) -> CheckedEntry:
    """The outcome of :func:`precheck_entry` once its signature was checked (``valid``)."""
    if valid:
        return checked
    key, sig, message = signature
    try:
        key.verify(sig, message)  # raises the explanation; a bad signature is the rare path
        raise InvalidSignature("signature failed a batch check but passes alone", key_id=key.key_id)
    except VerificationError as exc:
        return CheckedEntry(checked.offset, checked.raw, checked.entry,
                            rejection=Finding.from_error(Kind(exc.kind), exc, **entry_located(checked)))


def recompute_entry_hash(entry: Mapping[str, Any], computed: bytes | None = None) -> bytes:
    """Step [2]: the entry hash recomputed (spec section 3), VerificationError
    (``hash_mismatch``, evidence ``computed``) unless it is the stored one. ``computed``: the
    hash of the preimage :func:`avro_fast.read_entry` wrote, if it did."""
    try:  # a decoded entry has exactly the schema's types: the typed writer gives entry_hash's bytes
        computed = computed or records.entry_hash_typed(entry)
    except (ValueError, TypeError) as exc:
        raise VerificationError(f"entry cannot be hashed (RFC 8785): {exc}", kind=Kind.HASH_MISMATCH.value) from exc
    if computed != bytes(entry["entry_hash"]):
        raise VerificationError(f"entry {entry['seq']}: entry_hash does not match its content",
                                kind=Kind.HASH_MISMATCH.value, expected=bytes(entry["entry_hash"]), computed=computed)
    return computed


def check_payload(action: Mapping[str, Any]) -> None:
    """Step [2]: a payload travels with its 32-byte salt and matches its commitment (section 2)."""
    payload, salt = action.get("payload"), action.get("payload_salt")
    if payload is None and salt is None:
        return  # hash-only mode or erased: nothing to compare
    if payload is None or salt is None or len(salt) != records.SALT_LEN:
        raise VerificationError("payload and payload_salt must travel together (32-byte salt)",
                                kind=Kind.HASH_MISMATCH.value, event_id=action["event_id"])
    computed = records.payload_commitment(bytes(salt), bytes(payload))
    if computed != bytes(action["payload_hash"]):
        raise VerificationError(f"payload of event {action['event_id']} does not match its commitment",
                                kind=Kind.HASH_MISMATCH.value, expected=bytes(action["payload_hash"]), computed=computed)


def entry_signature_check(entry: Mapping[str, Any], entry_hash: bytes, config: CheckerConfig
                          ) -> SignatureCheck | None:
    """Step [3]: the signature to verify over the recomputed hash (None: checkpoint signing
    mode); VerificationError ``unknown_key`` if the entry's key is not trusted."""
    key = config.trusted_keys.get(entry["key_id"])
    if key is None:
        raise VerificationError(f"entry {entry['seq']} names key {entry['key_id'][:16]}..., which is not trusted",
                                kind=Kind.UNKNOWN_KEY.value, key_id=entry["key_id"])
    signature = entry.get("signature")
    if signature is None:
        return None  # checkpoint signing mode: covered by a signed checkpoint instead
    return key, bytes(signature), records.entry_signing_message(entry_hash)


def carries_approvals(action: Mapping[str, Any]) -> bool:
    """Step [9] applies: the action carries approvals or a decision that needs them."""
    return bool(action.get("approvals")) or (action.get("policy") or {}).get("decision") == "approved"


def _verify_approvals(action: Mapping[str, Any], approvers: Any) -> None:
    from ledgerstream.core.approvals import verify_approvals

    verify_approvals(action, approvers.approvers, approvers.m)
