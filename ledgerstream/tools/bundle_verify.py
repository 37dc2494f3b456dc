"""Verify an evidence bundle offline: no Kafka, no dev stack, only the bundle and pins.

Why it collects instead of raising at the first problem: a reader of evidence needs every
discrepancy named (check, member, detail) in one pass. ``ok`` is true only when no check
failed. The steps follow docs/bundle-format.md "Verifying", numbered alike below.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography import x509

from ledgerstream.core import merkle, mldsa, note, records
from ledgerstream.core.wire import codec
from ledgerstream.core.errors import ConfigError, DecodeError, VerificationError
from ledgerstream.core.timestamp import verify_timestamp
from ledgerstream.core.approvals import ApproverSet, verify_approvals
from ledgerstream.core.verify import (CheckedEntry, Checker, CheckerConfig, Finding, Kind, carries_approvals, check_payload,
                                      entry_signature_check, recompute_entry_hash)
from ledgerstream.tools import bundle_format as bf
from ledgerstream.tools.bundle_zip import UNREADABLE, ZipLimitError, ZipLimits, ZipMembers, read_members


#: check names, in the order they run (the JSON contract's "checks" keys)
CHECKS = ("zip", "manifest", "structure", "schema", "key", "checkpoint", "timestamp", "witness", "consistency",
          "decode", "entry_hash", "signature", "payload", "approvals", "inclusion", "chain", "render", "links", "selection")
#: selection.json's fields, and those of its "selection" object (tools/replay.py Selection.describe)
SELECTION_FIELDS = {"selection", "redacted_payloads", "entries", "origin", "exported_at", "exporter"}
FILTER_FIELDS = {"agents", "sessions", "action_types", "since", "until", "seq_from", "seq_to", "follow_links"}
#: the report check a core finding about the bundled entries counts against (others: "chain")
_CORE_CHECK = {Kind.LINK_MISMATCH: "links", Kind.LINK_DANGLING: "links"}


@dataclass
class BundleReport:
    """Outcome of :func:`verify_bundle`; ``to_json`` is the documented JSON form."""

    entries: int = 0
    passed: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    errors: list[dict[str, str]] = field(default_factory=list)
    manifest_sha256: str | None = None
    bundle_sha256: str | None = None
    keys: list[dict[str, Any]] = field(default_factory=list)
    tsa_ca: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    signer_key_pinned: bool = False
    #: the approver set entries' approvals were checked against: {"source", "m", "approvers"}
    approvers: dict[str, Any] | None = None
    #: the checkpoint note's cosignatures: {"source", "quorum", "cosignatures", "witnessed"}
    witnesses: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def good(self, check: str, n: int = 1) -> None:
        self.passed[check] += n

    def bad(self, check: str, member: str, detail: str) -> None:
        self.failed[check] += 1
        self.errors.append({"check": check, "member": member, "detail": detail})

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries,
                "checks": {c: {"passed": self.passed[c], "failed": self.failed[c]} for c in CHECKS},
                "errors": self.errors, "manifest_sha256": self.manifest_sha256,
                "bundle_sha256": self.bundle_sha256, "keys": self.keys, "tsa_ca": self.tsa_ca,
                "checkpoint": self.checkpoint, "signer_key_pinned": self.signer_key_pinned,
                "approvers": self.approvers, "witnesses": self.witnesses}


@dataclass
class _Checkpoint:
    size: int
    root: bytes
    chain_head: bytes
    origin: str
    timestamps: list[dict[str, str]]
    key_id: str = ""


def verify_bundle(source: Path | bytes, *, trusted_keys: list[bytes] | None = None,
                  tsa_ca_pem: bytes | None = None, limits: ZipLimits = ZipLimits(),
                  require_pinned: bool = False, approvers: ApproverSet | None = None,
                  witnesses: tuple[list[note.Verifier], int] | None = None) -> BundleReport:
    """Verify a bundle (path or bytes). ``trusted_keys`` (PEMs) pin the signer keys and
    ``tsa_ca_pem`` the TSA CA; without them the bundle's own are used (and reported as
    ``signer_key_pinned: false``, an error with ``require_pinned``); ``approvers`` pins the
    approver set (else the bundle's ``approvers.json`` is used, reported as its source);
    ``witnesses`` pins the witness keys and quorum (else the bundle's ``witnesses.json``).
    ``limits`` bound what an untrusted ZIP may cost (docs/bundle-format.md "Limits")."""
    report = BundleReport(signer_key_pinned=trusted_keys is not None)
    if require_pinned and trusted_keys is None:
        report.bad("key", "keys/", "no signer key pinned (--require-pinned): a bundle re-signed end to end "
                                   "with another key would verify against its own keys")
    with (io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else open(source, "rb")) as fh:
        size = fh.seek(0, io.SEEK_END)
        if size <= limits.bundle_bytes:
            report.bundle_sha256 = _sha256(fh)
        members = _read_zip(fh, size, limits, report)  # 1
        if members is None or not _manifest(members, report):  # 2
            return report
        _Verifier(members, report, trusted_keys, tsa_ca_pem, approvers, witnesses).run()
    return report


def _sha256(fh: BinaryIO) -> str:
    fh.seek(0)
    digest = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _read_zip(fh: BinaryIO, size: int, limits: ZipLimits, report: BundleReport) -> ZipMembers | None:
    """1. A plain ZIP within the limits: no duplicate, directory, absolute, '..' or encrypted
    members, no stray bytes, CRCs good."""
    try:
        members = read_members(fh, size, limits)
    except ZipLimitError as exc:
        report.bad("zip", exc.member, exc.detail)
        return None
    except UNREADABLE as exc:
        report.bad("zip", "", f"not a readable ZIP: {type(exc).__name__}: {exc}")
        return None
    report.good("zip")
    return members


def _manifest(members: ZipMembers, report: BundleReport) -> bool:
    """2. manifest.json: canonical JSON, known format, and exactly the other members, each with
    its SHA-256 and size. Its own SHA-256 identifies the bundle."""
    data = members.get(bf.MANIFEST)
    if data is None:
        report.bad("manifest", bf.MANIFEST, "missing")
        return False
    report.manifest_sha256 = hashlib.sha256(data).hexdigest()
    try:
        manifest = json.loads(data.decode("utf-8"))
        canonical = bf.canonical(manifest)
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        report.bad("manifest", bf.MANIFEST, f"not JSON: {exc}")
        return False
    if canonical != data:
        report.bad("manifest", bf.MANIFEST, "not in RFC 8785 canonical form (bytes were changed)")
        return False
    if not isinstance(manifest, dict) or set(manifest) != {"format", "format_version", "spec_version", "members"}:
        report.bad("manifest", bf.MANIFEST, "fields must be exactly format, format_version, spec_version, members")
        return False
    if manifest["format"] != bf.FORMAT or manifest["format_version"] != bf.FORMAT_VERSION:
        report.bad("manifest", bf.MANIFEST, f"unsupported format {manifest['format']!r} v{manifest['format_version']!r}")
        return False
    if manifest["spec_version"] not in bf.SUPPORTED_SPEC_VERSIONS:
        report.bad("manifest", bf.MANIFEST, f"unsupported spec_version {manifest['spec_version']!r}")
        return False
    listed = manifest["members"]
    if not isinstance(listed, dict):
        report.bad("manifest", bf.MANIFEST, "members must be an object")
        return False
    ok = True
    for name in sorted(set(members) - set(listed) - {bf.MANIFEST}):
        report.bad("manifest", name, "member is not listed in the manifest (added)")
        ok = False
    for name in sorted(set(listed) - set(members)):
        report.bad("manifest", name, "listed in the manifest but missing from the bundle")
        ok = False
    for name in sorted(set(listed) & set(members)):
        want = listed[name]
        sha256, size = members.digests[name]
        got = {"sha256": sha256, "size": size}
        if want != got:
            report.bad("manifest", name, f"member or its manifest entry was modified: manifest says {want}, "
                                           f"member is {got}")
            ok = False
        else:
            report.good("manifest")
    if bf.MANIFEST in listed:
        report.bad("manifest", bf.MANIFEST, "the manifest must not list itself")
        ok = False
    return ok


class _Verifier:
    """Steps 3-9 over the member map."""

    def __init__(self, members: Mapping[str, bytes], report: BundleReport, pinned_keys: list[bytes] | None,
                 pinned_ca: bytes | None, pinned_approvers: ApproverSet | None = None,
                 pinned_witnesses: tuple[list[note.Verifier], int] | None = None) -> None:
        self.m = members
        self.pinned_witnesses = pinned_witnesses
        self.approvers = pinned_approvers
        self.r = report
        self.pinned_keys = pinned_keys
        self.pinned_ca = pinned_ca
        self.schemas: dict[bytes, Any] = {}
        self.keys: dict[str, mldsa.PublicKey] = {}
        self.ca: bytes = b""

    def run(self) -> None:
        if not self._structure():  # 3
            return
        self._schemas()  # 4
        self._keys()  # 5
        self._approvers()  # 5
        self._ca()  # 6
        main = self._checkpoint(bf.checkpoint_prefix(None))  # 7
        if main is None:
            return
        self.r.checkpoint = {"origin": main.origin, "tree_size": main.size, "root": main.root.hex(),
                             "timestamps": main.timestamps}
        self._note(main)  # 7b
        self._earlier(main)  # 8
        self._entries(main)  # 9, 10, 11, 12

    # 3 -----------------------------------------------------------------------------------------
    def _structure(self) -> bool:
        """Every member has a known role; required members are there."""
        ok = True
        for name in sorted(self.m):
            if name in (bf.MANIFEST, bf.README, bf.SELECTION, bf.TSA_CA, bf.APPROVERS, bf.NOTE, bf.WITNESSES):
                continue
            if not any(rx.fullmatch(name) for rx in (bf.CHECKPOINT_RE, bf.ENTRY_RE, bf.INCLUSION_RE, bf.CONSISTENCY_RE,
                                                 bf.KEY_RE, bf.SCHEMA_RE, bf.APPROVER_KEY_RE)):
                self.r.bad("structure", name, "unexpected member (not part of the bundle format)")
                ok = False
        for name in (bf.README, bf.SELECTION, bf.TSA_CA, bf.CHECKPOINT):
            if name not in self.m:
                self.r.bad("structure", name, "required member is missing")
                ok = False
        seqs = self._seqs()
        if not seqs:
            self.r.bad("structure", "entries/", "the bundle holds no entries")
            ok = False
        for seq in seqs:
            for name in (bf.entry_avro(seq), bf.entry_json(seq), bf.inclusion_name(seq)):
                if name not in self.m:
                    self.r.bad("structure", name, f"entry {seq} is incomplete: member missing")
                    ok = False
        if ok:
            self.r.good("structure")
        return ok

    def _seqs(self) -> list[int]:
        found = set()
        for name in self.m:
            for rx in (bf.ENTRY_RE, bf.INCLUSION_RE):
                if (mt := rx.fullmatch(name)) is not None:
                    found.add(int(mt.group(1)))
        return sorted(found)

    # 4 -----------------------------------------------------------------------------------------
    def _schemas(self) -> None:
        texts = {n: self.m[n] for n in self.m if bf.SCHEMA_RE.fullmatch(n)}
        self.schemas, problems = bf.load_schemas(texts)
        for member, detail in problems:
            self.r.bad("schema", member, detail)
        self.r.good("schema", len(texts) - len(problems))

    # 5 -----------------------------------------------------------------------------------------
    def _keys(self) -> None:
        """Bundled keys must be what their names say; pins, if given, replace them as the trust set."""
        bundled: dict[str, mldsa.PublicKey] = {}
        for name in sorted(n for n in self.m if bf.KEY_RE.fullmatch(n)):
            try:
                key = mldsa.load_public_key(self.m[name])
            except ConfigError as exc:
                self.r.bad("key", name, f"not an ML-DSA-65 public key: {exc}")
                continue
            if bf.key_name(key.key_id) != name:
                self.r.bad("key", name, f"key_id of this key is {key.key_id}, not the one in its name")
                continue
            if mldsa.public_key_pem(key) != self.m[name]:
                self.r.bad("key", name, "not the canonical SubjectPublicKeyInfo PEM of its key (bytes were changed)")
                continue
            bundled[key.key_id] = key
            self.r.good("key")
        if self.pinned_keys is None:
            self.keys = bundled
            self.r.keys = [{"key_id": k, "source": "bundle"} for k in sorted(bundled)]
            return
        for pem in self.pinned_keys:
            key = mldsa.load_public_key(pem)
            self.keys[key.key_id] = key
        self.r.keys = [{"key_id": k, "source": "pinned"} for k in sorted(self.keys)]
        self.r.keys += [{"key_id": k, "source": "bundle (not pinned)"} for k in sorted(set(bundled) - set(self.keys))]

    def _approvers(self) -> None:
        """approvers.json names each approver's key, bundled as approvers/<key_id>.pem; a pinned
        set (--policy) replaces it as the trust for approvals."""
        if self.approvers is not None:
            self._describe_approvers("pinned")
            return
        if bf.APPROVERS not in self.m:
            if any(bf.APPROVER_KEY_RE.fullmatch(n) for n in self.m):
                self.r.bad("approvals", bf.APPROVERS, "approver keys without approvers.json")
            return
        doc = self._json(bf.APPROVERS, "approvals", {"m", "approvers"})
        if doc is None:
            return
        keys: dict[str, mldsa.PublicKey] = {}
        try:
            if not isinstance(doc["approvers"], dict):
                raise ConfigError("'approvers' must map approver ids to key ids")
            for approver, key_id in sorted(doc["approvers"].items()):
                name = bf.approver_key_name(str(key_id))
                if name not in self.m:
                    raise ConfigError(f"approver {approver}'s key {name} is not bundled")
                key = mldsa.load_public_key(self.m[name])
                if key.key_id != key_id or mldsa.public_key_pem(key) != self.m[name]:
                    raise ConfigError(f"{name} is not the canonical PEM of key {key_id}")
                keys[approver] = key
            self.approvers = ApproverSet(keys, doc["m"])
        except (ConfigError, ValueError, TypeError) as exc:
            self.r.bad("approvals", bf.APPROVERS, str(exc))
            return
        unused = {n for n in self.m if bf.APPROVER_KEY_RE.fullmatch(n)} - {
            bf.approver_key_name(k.key_id) for k in keys.values()}
        for name in sorted(unused):
            self.r.bad("approvals", name, "approver key not named in approvers.json")
        self._describe_approvers("bundle")

    def _describe_approvers(self, source: str) -> None:
        assert self.approvers is not None
        self.r.approvers = {"source": source, "m": self.approvers.m,
                            "approvers": {a: k.key_id for a, k in sorted(self.approvers.approvers.items())}}

    def _approvals(self, name: str, action: dict[str, Any]) -> None:
        """Step [9] of the core (``core.approvals.verify_approvals``) against the approver set."""
        if not carries_approvals(action):
            return
        if self.approvers is None:
            self.r.bad("approvals", name, "the entry carries approvals, and the bundle has no approver set "
                                          "(approvers.json) to check them against")
            return
        try:
            verify_approvals(action, self.approvers.approvers, self.approvers.m)
        except VerificationError as exc:
            self.r.bad("approvals", name, str(exc))
            return
        self.r.good("approvals")

    def _key(self, key_id: str, member: str) -> mldsa.PublicKey | None:
        key = self.keys.get(key_id)
        if key is None:
            where = "the pinned keys (--trusted-key)" if self.pinned_keys is not None else "the bundle's keys/"
            self.r.bad("key", member, f"key_id {key_id} is not among {where}")
        return key

    # 6 -----------------------------------------------------------------------------------------
    def _ca(self) -> None:
        self.ca = self.pinned_ca if self.pinned_ca is not None else self.m.get(bf.TSA_CA, b"")
        member = bf.TSA_CA if self.pinned_ca is None else "--tsa-ca"
        try:
            certs = x509.load_pem_x509_certificates(self.ca)
        except ValueError as exc:
            self.r.bad("timestamp", member, f"not a PEM certificate bundle: {exc}")
            return
        if self.pinned_ca is None and bf.canonical_pem(certs) != self.ca:
            self.r.bad("timestamp", member, "not the canonical PEM of its certificates (bytes were changed)")
            return
        self.r.tsa_ca = {"source": "bundle" if self.pinned_ca is None else "pinned",
                         "sha256": hashlib.sha256(self.ca).hexdigest(),
                         "subjects": [c.subject.rfc4514_string() for c in certs]}

    # 7 -----------------------------------------------------------------------------------------
    def _checkpoint(self, prefix: str) -> _Checkpoint | None:
        """A checkpoint: record, body and signature agree, the body parses, the signature
        verifies under a trusted key, the rendering matches, and >= 1 token verifies."""
        names = {s: prefix + "checkpoint" + s for s in ("", ".sig", ".avro", ".json")}
        for name in names.values():
            if name not in self.m:
                self.r.bad("structure", name, "checkpoint member missing")
                return None
        body, sig = self.m[names[""]], self.m[names[".sig"]]
        try:
            kind, rec = codec.decode_as_written(self.m[names[".avro"]], self.schemas)
        except DecodeError as exc:
            self.r.bad("decode", names[".avro"], str(exc))
            return None
        if kind != "Checkpoint":
            self.r.bad("decode", names[".avro"], f"is a {kind} record, not a Checkpoint")
            return None
        self.r.good("decode")
        ok = True
        if bytes(rec["body"]) != body:
            self.r.bad("checkpoint", names[""], "differs from the body in the Checkpoint record")
            ok = False
        if bytes(rec["signature"]) != sig:
            self.r.bad("checkpoint", names[".sig"], "differs from the signature in the Checkpoint record")
            ok = False
        try:
            parsed = records.parse_checkpoint_body(body)
        except ValueError as exc:
            self.r.bad("checkpoint", names[""], f"body does not parse: {exc}")
            return None
        fields = {"origin": rec["origin"], "tree_size": rec["tree_size"], "root_hash": bytes(rec["root_hash"]),
                  "chain_head": bytes(rec["chain_head"]), "created_at": rec["created_at"]}
        differing = sorted(k for k, v in fields.items() if parsed[k] != v)
        if differing:
            self.r.bad("checkpoint", names[".avro"], f"record fields {differing} differ from the signed body")
            ok = False
        if rec.get("spec_version", 1) not in bf.SUPPORTED_SPEC_VERSIONS:
            self.r.bad("checkpoint", names[".avro"], f"unsupported spec_version {rec.get('spec_version')}")
            ok = False
        key = self._key(rec["key_id"], names[".avro"])
        if key is not None:
            try:
                key.verify(sig, body)
                self.r.good("key")
            except VerificationError as exc:
                self.r.bad("checkpoint", names[".sig"], f"signature over the body does not verify: {exc}")
                ok = False
        if bf.render_checkpoint(rec) != self.m[names[".json"]]:
            self.r.bad("render", names[".json"], "is not the rendering of checkpoint.avro")
        else:
            self.r.good("render")
        timestamps = self._tokens(prefix, body)
        if ok:
            self.r.good("checkpoint")
        return _Checkpoint(parsed["tree_size"], parsed["root_hash"], parsed["chain_head"], parsed["origin"], timestamps,
                           rec["key_id"])

    def _note(self, main: _Checkpoint) -> None:
        """The main checkpoint's signed note: its text is the checkpoint body, every line of a
        known key verifies (the ML-DSA-65 line under the checkpoint's key, Ed25519 log lines
        and cosignatures under the pinned or bundled vkeys), and a pinned witness quorum is
        met (the bundle's own quorum only decides what the report calls "witnessed": a bundle
        may be exported before its checkpoint is cosigned)."""
        doc = self._json(bf.WITNESSES, "witness", {"quorum", "log_vkeys", "witnesses"}) if bf.WITNESSES in self.m else None
        pinned = self.pinned_witnesses
        source = "pinned" if pinned is not None else "bundle" if doc is not None else None
        try:
            log_keys = [note.parse_vkey(v) for v in (doc or {}).get("log_vkeys", [])]
            witnesses, quorum = pinned if pinned is not None else (
                [note.parse_vkey(v) for v in (doc or {}).get("witnesses", [])], int((doc or {}).get("quorum", 0)))
        except (ValueError, TypeError, AttributeError) as exc:
            self.r.bad("witness", bf.WITNESSES, f"malformed: {exc}")
            return
        if bf.NOTE not in self.m:
            if quorum and pinned is not None:
                self.r.bad("witness", bf.NOTE, f"missing: the checkpoint must be cosigned by {quorum} witness(es)")
            return
        body, key = self.m[bf.CHECKPOINT], self.keys.get(main.key_id)
        try:
            text, lines = note.parse_note(self.m[bf.NOTE])
        except ValueError as exc:
            self.r.bad("witness", bf.NOTE, f"not a signed note: {exc}")
            return
        if text != body:
            self.r.bad("witness", bf.NOTE, "its text is not the checkpoint body")
            return
        log_keys += [note.Verifier(main.origin, note.MLDSA65, key.raw)] if key is not None else []
        cosigned, ok = [], True
        for line in lines:
            for v in [k for k in log_keys + list(witnesses) if k.matches(line)]:
                try:
                    v.verify(text, line)
                except VerificationError as exc:
                    self.r.bad("witness", bf.NOTE, str(exc))
                    ok = False
                    continue
                if v in witnesses:
                    cosigned.append({"witness": v.name, "key_type": note.KEY_TYPES[v.kind], "verified": True})
        count = len({c["witness"] for c in cosigned})
        if count < quorum and pinned is not None:  # the bundle's own policy only informs ("witnessed")
            self.r.bad("witness", bf.NOTE, f"{count} verified cosignature(s), the policy needs {quorum}")
            ok = False
        if ok:
            self.r.good("witness")
        self.r.witnesses = {"source": source, "quorum": quorum, "cosignatures": cosigned,
                            "witnessed": ok and quorum > 0 and count >= quorum}

    def _tokens(self, prefix: str, body: bytes) -> list[dict[str, str]]:
        """Every token of the checkpoint must verify over its body; at least one is required."""
        tokens = [n for n in self.m if (mt := bf.CHECKPOINT_RE.fullmatch(n)) and (mt.group(1) is None) == (prefix == "")
                  and n.startswith(prefix) and n.endswith(".tsr")]
        if not tokens:
            self.r.bad("timestamp", prefix + "checkpoint.tsr", "no RFC 3161 token for this checkpoint")
            return []
        times = []
        for name in sorted(tokens):
            try:
                info = verify_timestamp(self.m[name], body, self.ca)
            except (VerificationError, ConfigError) as exc:
                self.r.bad("timestamp", name, str(exc))
                continue
            times.append({"member": name, "gen_time": info.gen_time.isoformat(), "tsa": info.tsa_subject})
            self.r.good("timestamp")
        return times

    # 8 -----------------------------------------------------------------------------------------
    def _earlier(self, main: _Checkpoint) -> None:
        """Earlier checkpoints (checkpoints/<size>/) each with a consistency proof to the main one."""
        sizes = sorted({int(mt.group(1)) for n in self.m if (mt := bf.CHECKPOINT_RE.fullmatch(n)) and mt.group(1)})
        proofs = {n: mt for n in self.m if (mt := bf.CONSISTENCY_RE.fullmatch(n))}
        for size in sizes:
            prefix = bf.checkpoint_prefix(size)
            cp = self._checkpoint(prefix)
            if cp is None:
                continue
            if cp.size != size or size >= main.size or cp.origin != main.origin:
                self.r.bad("consistency", prefix + "checkpoint", f"tree size {cp.size} / origin {cp.origin!r} does "
                           f"not fit its folder or precede the main checkpoint ({main.size}, {main.origin!r})")
                continue
            name = bf.consistency_name(size, main.size)
            proofs.pop(name, None)
            if name not in self.m:
                self.r.bad("consistency", name, "missing consistency proof to the main checkpoint")
                continue
            doc = self._json(name, "consistency", {"size1", "root1", "size2", "root2", "path"})
            if doc is None:
                continue
            try:
                named = (doc["size1"], doc["root1"], doc["size2"], doc["root2"])
                if named != (size, cp.root.hex(), main.size, main.root.hex()):
                    raise VerificationError("sizes or roots differ from the checkpoints")
                merkle.verify_consistency(size, main.size, cp.root, main.root, [bytes.fromhex(h) for h in doc["path"]])
            except (VerificationError, ValueError, TypeError) as exc:
                self.r.bad("consistency", name, str(exc))
                continue
            self.r.good("consistency")
        for name in sorted(proofs):
            self.r.bad("consistency", name, "consistency proof without its earlier checkpoint")

    # 9 -----------------------------------------------------------------------------------------
    def _entries(self, main: _Checkpoint) -> None:
        decoded: dict[int, dict[str, Any]] = {}
        for seq in self._seqs():
            rec = self._entry(seq, main)
            if rec is not None:
                decoded[seq] = rec
        self.r.entries = len(self._seqs())
        self._chain(decoded, main)
        follow = self._selection(main)
        self._links(decoded, follow)

    def _entry(self, seq: int, main: _Checkpoint) -> dict[str, Any] | None:
        name = bf.entry_avro(seq)
        try:
            kind, rec = codec.decode_as_written(self.m[name], self.schemas)
        except DecodeError as exc:
            self.r.bad("decode", name, str(exc))
            return None
        if kind != "LedgerEntry" or rec["seq"] != seq:
            self.r.bad("decode", name, f"is a {kind} with seq {rec.get('seq')}, not LedgerEntry {seq}")
            return None
        if rec.get("spec_version", 1) not in bf.SUPPORTED_SPEC_VERSIONS:
            self.r.bad("decode", name, f"unsupported spec_version {rec.get('spec_version')}")
            return None
        self.r.good("decode")
        try:  # the core's per-entry rule (core/verify/entries.py), step by step for the report
            computed = recompute_entry_hash(rec)
            self.r.good("entry_hash")
        except VerificationError as exc:
            self.r.bad("entry_hash", name, str(exc))
            computed = exc.evidence.get("computed")
            if not isinstance(computed, bytes):
                return None  # it cannot be hashed at all
        self._entry_signature(name, rec, computed)
        self._payload(name, rec["action"])
        self._approvals(name, rec["action"])
        if rec.get("timestamp_token") is not None:
            try:
                verify_timestamp(bytes(rec["timestamp_token"]), computed, self.ca)
                self.r.good("timestamp")
            except (VerificationError, ConfigError) as exc:
                self.r.bad("timestamp", name, f"entry token: {exc}")
        if bf.render_entry(rec) != self.m[bf.entry_json(seq)]:
            self.r.bad("render", bf.entry_json(seq), f"is not the rendering of {name}")
        else:
            self.r.good("render")
        self._inclusion(seq, computed, main)
        return rec

    def _entry_signature(self, name: str, rec: dict[str, Any], computed: bytes) -> None:
        try:
            check = entry_signature_check(rec, computed, CheckerConfig(trusted_keys=self.keys))
        except VerificationError:
            self._key(rec["key_id"], name)  # says which keys were trusted
            return
        if check is None:
            return  # checkpoint signing mode: the checkpoint signature and the inclusion proof cover it
        key, signature, message = check
        try:
            key.verify(signature, message)
            self.r.good("signature")
        except VerificationError as exc:
            self.r.bad("signature", name, str(exc))

    def _payload(self, name: str, action: dict[str, Any]) -> None:
        if action.get("payload") is None and action.get("payload_salt") is None:
            return  # redacted, erased or hash-only: the commitment stays in the hash
        try:
            check_payload(action)
        except VerificationError as exc:
            self.r.bad("payload", name, str(exc))
            return
        self.r.good("payload")

    def _inclusion(self, seq: int, computed: bytes, main: _Checkpoint) -> None:
        name = bf.inclusion_name(seq)
        doc = self._json(name, "inclusion", {"leaf_index", "tree_size", "entry_hash", "leaf_hash", "root", "path"})
        if doc is None:
            return
        leaf = merkle.leaf_hash(records.merkle_leaf_input(computed))
        try:
            if (doc["leaf_index"], doc["tree_size"], doc["root"]) != (seq, main.size, main.root.hex()):
                raise VerificationError(f"names leaf {doc['leaf_index']} of tree {doc['tree_size']} with root "
                                        f"{doc['root']}, not leaf {seq} of the checkpoint's tree {main.size}")
            if (doc["entry_hash"], doc["leaf_hash"]) != (computed.hex(), leaf.hex()):
                raise VerificationError("entry_hash / leaf_hash differ from the entry's recomputed hash")
            merkle.verify_inclusion(leaf, seq, main.size, [bytes.fromhex(h) for h in doc["path"]], main.root)
        except (VerificationError, ValueError, TypeError) as exc:
            self.r.bad("inclusion", name, str(exc))
            return
        self.r.good("inclusion")

    def _chain(self, decoded: dict[int, dict[str, Any]], main: _Checkpoint) -> None:
        """The core's chain rule (core/verify/ steps [4], [5], [8]) over the bundled entries, a
        ledger with gaps where the selection is sparse: chains and agent chains must hold where
        neighbours are bundled and start from zero, resolved links must name the entry (and,
        for a target its successor's ``prev_hash`` names, its hash); and the entry at the
        checkpoint's head must be its chain head."""
        findings: list[Finding] = []
        checker = Checker(CheckerConfig(trusted_keys={}, link_grace_seconds=None, link_grace_entries=2 ** 62))
        for seq, rec in sorted(decoded.items()):
            checked = CheckedEntry(seq, b"", rec, bytes(rec["entry_hash"]))
            findings += [f for f in checker.feed_checked([checked]) if f.kind is not Kind.GAP]
        for f in findings:
            self.r.bad(_CORE_CHECK.get(f.kind, "chain"), bf.entry_avro(f.seq_from), f.detail)
        broken = {f.seq_from for f in findings}
        self.r.good("chain", sum(seq not in broken for seq in decoded))
        self.r.good("links", sum(1 for seq, r in decoded.items() if r.get("resolved_links") and seq not in broken))
        head = decoded.get(main.size - 1)
        if head is not None and bytes(head["entry_hash"]) != main.chain_head:
            self.r.bad("chain", bf.entry_avro(main.size - 1), "entry_hash is not the checkpoint's chain-head")

    # 11 ----------------------------------------------------------------------------------------
    def _selection(self, main: _Checkpoint) -> bool:
        """selection.json has exactly its fields, lists exactly the bundled seqs and the main
        checkpoint's origin; returns its follow_links (False if unreadable)."""
        doc = self._json(bf.SELECTION, "selection", SELECTION_FIELDS)
        if doc is None:
            return False
        problems = []
        if not isinstance(doc["selection"], dict) or set(doc["selection"]) != FILTER_FIELDS:
            problems.append(f"'selection' must have exactly the fields {sorted(FILTER_FIELDS)}")
        if doc["entries"] != self._seqs():
            problems.append("'entries' is not the list of bundled seqs")
        if doc["origin"] != main.origin:
            problems.append(f"'origin' {doc['origin']!r} is not the checkpoint's {main.origin!r}")
        if not isinstance(doc["redacted_payloads"], bool):
            problems.append("'redacted_payloads' is not a boolean")
        follow = isinstance(doc["selection"], dict) and doc["selection"].get("follow_links")
        if not problems and not isinstance(follow, bool):
            problems.append("'follow_links' is not a boolean")
        for problem in problems:
            self.r.bad("selection", bf.SELECTION, problem)
        if not problems:
            self.r.good("selection")
        return follow is True

    # 12 ----------------------------------------------------------------------------------------
    def _links(self, decoded: dict[int, dict[str, Any]], follow_links: bool) -> None:
        """A ``--follow-links`` bundle holds every resolved link's target (the links themselves
        are checked by the core's rule in :meth:`_chain`)."""
        if not follow_links:
            return
        for seq, rec in sorted(decoded.items()):
            for r in rec.get("resolved_links") or []:
                if r["status"] == "resolved" and r["seq"] is not None and r["seq"] not in decoded:
                    self.r.bad("links", bf.entry_avro(seq), f"link target {r['agent_id']}/{r['event_id']} "
                                                            f"(seq {r['seq']}) is not in this --follow-links bundle")

    def _json(self, name: str, check: str, keys: set[str]) -> dict[str, Any] | None:
        data = self.m[name]
        try:
            doc = json.loads(data.decode("utf-8"))
            if bf.canonical(doc) != data:
                raise ValueError("not in RFC 8785 canonical form")
            if not isinstance(doc, dict) or set(doc) != keys:
                raise ValueError(f"fields must be exactly {sorted(keys)}")
        except (ValueError, UnicodeDecodeError, TypeError) as exc:
            self.r.bad(check, name, str(exc))
            return None
        return doc
