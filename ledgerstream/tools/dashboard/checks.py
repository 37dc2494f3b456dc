"""Verification status of one entry, for the entry page: each check with evidence.

The steps are the spec's (docs/spec.md, "Verifying"), one entry at a time; 1 and 2 are
``ledgerstream.core.verify.check_entry``, the very check every verifier runs:
  1. its entry hash recomputes (and a present payload matches its commitment);
  2. its ML-DSA-65 signature verifies under a known signer key (entry signing mode);
  3. it continues the chain (prev_hash), its agent's chain (agent_prev_hash) and its links
     name the right entries: the core's verdict when it adopted the entry (LedgerView.issues);
  4. it is included in the latest signed checkpoint covering it (RFC 9162 proof, checked
     here against the checkpoint's root) - the entry is then *published*;
  5. that checkpoint carries RFC 3161 tokens over its body - *timestamped*;
  6. with witnesses configured, their quorum has cosigned that checkpoint or a larger one
     (the core's witnessed size) - *witnessed*.
A check that cannot be made yet (no checkpoint covers the entry) is ``pending``, never ``ok``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledgerstream.core import merkle, mldsa, records
from ledgerstream.core.errors import LedgerstreamError, VerificationError
from ledgerstream.core.verify import CheckedEntry, CheckerConfig, Kind, check_entry
from ledgerstream.core.verify.trust import NoteTrust
from ledgerstream.core.timestamp import token_gen_time, verify_timestamp
from ledgerstream.tools.dashboard.ledger import CheckpointInfo, LedgerView

OK, FAILED, PENDING, UNKNOWN = "ok", "failed", "pending", "unknown"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


@dataclass
class EntryReport:
    seq: int
    offset: int
    entry: dict[str, Any]
    checks: list[Check]
    state: str  # sequenced | published | timestamped | witnessed
    proof: dict[str, Any] | None = None
    other_records: list[dict[str, Any]] = field(default_factory=list)
    source: str = "live"  # "index": answered from the ledger index (dashboard/indexed.py)

    @property
    def verified(self) -> bool:
        return all(c.status in (OK, PENDING) for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "offset": self.offset, "state": self.state, "verified": self.verified,
                "checks": [vars(c) for c in self.checks], "proof": self.proof,
                "other_records": self.other_records, "entry": self.entry, "source": self.source}


class EntryChecker:
    """Holds the trust roots: signer public keys (by key_id) and the TSA CA bundle."""

    def __init__(self, public_keys: list[mldsa.PublicKey], tsa_ca: bytes | None, notes: NoteTrust | None = None) -> None:
        self.keys = {k.key_id: k for k in public_keys}
        self.tsa_ca = tsa_ca
        self.config = CheckerConfig.from_keys(public_keys, tsa_ca=tsa_ca, **(notes or NoteTrust()).options())

    @classmethod
    def from_files(cls, key_files: list[Path], tsa_ca_file: Path | None, notes: NoteTrust | None = None) -> "EntryChecker":
        keys = [mldsa.load_public_key(p.read_bytes()) for p in key_files]
        return cls(keys, tsa_ca_file.read_bytes() if tsa_ca_file else None, notes)

    def checkpoint_signature(self, cp: CheckpointInfo) -> str:
        key = self.keys.get(cp.key_id)
        if key is None:
            return "unknown_key"
        try:
            key.verify(cp.signature, cp.body)
        except VerificationError:
            return "invalid"
        return "valid"

    def report(self, view: LedgerView, seq: int, offset: int, raw: bytes, agent_prev: int) -> EntryReport:
        checked = check_entry((offset, raw), self.config)
        if checked.entry is None:
            raise LedgerstreamError(f"the record at offset {offset} is not a ledger entry")
        entry, h = checked.entry, bytes(checked.entry["entry_hash"])
        issues = view.issues(seq)
        checks = [*self._record_checks(checked), *self._chain_checks(seq, agent_prev, entry, issues)]
        inclusion, proof, cp = self._inclusion(view, seq, h)
        checks.append(inclusion)
        state = "published" if inclusion.status == OK else "sequenced"
        if cp is not None:
            stamp = self._timestamps(view, cp)
            checks.append(stamp)
            if stamp.status == OK:
                state = "timestamped"
            if self.config.witness_quorum:
                witnessed = self._witnessed(view, cp)
                checks.append(witnessed)
                if witnessed.status == OK and state == "timestamped":
                    state = "witnessed"
        others = [{"offset": f.offset, "reason": f.reason} for f in view.other_records(seq)]
        return EntryReport(seq, offset, entry_json(entry), checks, state, proof, others)

    def _record_checks(self, checked: CheckedEntry) -> list[Check]:
        """Steps 1-2 as the verifiers run them, plus a per-entry token when there is one."""
        entry, rejection = checked.entry or {}, checked.rejection
        key_hint = f"{entry['key_id'][:16]}…"
        if rejection is not None and rejection.kind == Kind.HASH_MISMATCH:
            return [Check("entry hash", FAILED, rejection.detail),
                    Check("signature", UNKNOWN, "not checked: the entry's content does not match its hash")]
        hashed = Check("entry hash", OK, f"SHA-256 over the canonical entry recomputes to "
                                         f"{bytes(entry['entry_hash']).hex()[:16]}…")
        if rejection is not None and rejection.kind == Kind.UNKNOWN_KEY:
            signed = Check("signature", UNKNOWN, f"signer key {key_hint} is not configured (--public-key)")
        elif rejection is not None:
            signed = Check("signature", FAILED, rejection.detail)
        elif not checked.signed:
            signed = Check("signature", PENDING, "checkpoint signing mode: covered by the signed checkpoint only")
        else:
            signed = Check("signature", OK, f"ML-DSA-65 signature valid under key {key_hint}")
        checks = [hashed, signed]
        if entry.get("timestamp_token") is not None:
            bad = [n for n in checked.notes if n.kind == Kind.TIMESTAMP_INVALID]
            checks.append(Check("per-entry timestamp", FAILED, bad[0].detail) if bad
                          else self._token("per-entry timestamp", bytes(entry["timestamp_token"]),
                                           bytes(entry["entry_hash"])))
        return checks

    @staticmethod
    def _chain_checks(seq: int, agent_prev: int, entry: dict[str, Any], issues: dict[str, str]) -> list[Check]:
        """What the core found when it adopted the entry (no finding: the chains continue)."""
        where = f"seq {agent_prev}" if agent_prev >= 0 else "none (the agent's first entry)"
        ok = {"chain": "prev_hash is the entry hash of seq " + (str(seq - 1) if seq else "-1 (genesis: zeros)"),
              "agent chain": f"agent_prev_hash links to the agent's previous entry: {where}",
              "links": "each resolved link names the entry that carries its event"}
        names = ["chain", "agent chain"] + (["links"] if entry["action"].get("links") else [])
        return [Check(name, FAILED, issues[name]) if name in issues else Check(name, OK, ok[name]) for name in names]

    @staticmethod
    def _inclusion(view: LedgerView, seq: int, h: bytes) -> tuple[Check, dict[str, Any] | None, CheckpointInfo | None]:
        cp = view.latest_checkpoint()
        if cp is None or cp.tree_size <= seq:
            covered = cp.tree_size if cp else 0
            return (Check("inclusion", PENDING, f"not yet in a signed checkpoint (latest covers {covered} entries)"),
                    None, None)
        leaf = merkle.leaf_hash(records.merkle_leaf_input(h))
        path = view.tree.inclusion_proof(seq, cp.tree_size)
        proof = {"leaf_index": seq, "tree_size": cp.tree_size, "leaf_hash": leaf.hex(),
                 "root_hash": cp.root_hash.hex(), "hashes": [p.hex() for p in path],
                 "checkpoint_signature": cp.signature_status}
        try:
            merkle.verify_inclusion(leaf, seq, cp.tree_size, path, cp.root_hash)
        except VerificationError as exc:
            return Check("inclusion", FAILED, exc.diagnostics()), proof, cp
        signed = "signed" if cp.signature_status == "valid" else f"signature {cp.signature_status}"
        return (Check("inclusion", OK, f"RFC 9162 proof of {len(path)} hashes reproduces the root of the "
                                       f"latest checkpoint (size {cp.tree_size}, {signed})"), proof, cp)

    def _witnessed(self, view: LedgerView, cp: CheckpointInfo) -> Check:
        size, q = view.witnessed_size, self.config.witness_quorum
        if size >= cp.tree_size:
            return Check("witnessed", OK, f"{q} of {len(self.config.witnesses)} witnesses cosigned a checkpoint of "
                                          f"{size} entries, consistent with checkpoint {cp.tree_size}")
        return Check("witnessed", PENDING, f"the witnesses' quorum ({q}) has cosigned up to {size} entries so far")

    def _timestamps(self, view: LedgerView, cp: CheckpointInfo) -> Check:
        anchors = view.anchors_of(cp.tree_size)
        if not anchors:
            return Check("timestamp", PENDING, f"checkpoint {cp.tree_size} has no RFC 3161 token yet")
        results = [self._token(f"timestamp ({a.tsa})", a.token, cp.body) for _, a in anchors]
        good = [r for r in results if r.status == OK]
        best = good[0] if good else results[0]
        return Check("timestamp", best.status, "; ".join(r.detail for r in results))

    def _token(self, name: str, token: bytes, data: bytes) -> Check:
        if self.tsa_ca is None:
            try:
                when = token_gen_time(token).isoformat()
            except LedgerstreamError as exc:
                return Check(name, FAILED, str(exc))
            return Check(name, UNKNOWN, f"token says {when}; not verified (no TSA CA configured: --tsa-ca)")
        try:
            info = verify_timestamp(token, data, self.tsa_ca)
        except LedgerstreamError as exc:
            return Check(name, FAILED, str(exc))
        return Check(name, OK, f"RFC 3161 token valid: {info.gen_time.isoformat()} by {info.tsa_subject}")


def entry_json(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry for display: bytes as hex; the payload and its salt withheld (they may be
    secret or erased; the page shows the commitment, which is what the chain signs)."""
    out = records.jsonable(entry)
    payload = entry["action"].get("payload")
    out["action"]["payload"] = "erased or hash-only" if payload is None else f"withheld ({len(payload)} bytes)"
    out["action"].pop("payload_salt", None)
    if out.get("signature"):
        out["signature"] = out["signature"][:64] + f"… ({len(entry['signature'])} bytes)"
    return out
