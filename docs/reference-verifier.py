#!/usr/bin/env python3
"""Reference verifier for ledgerstream evidence bundles, written only from docs/spec.md and
docs/bundle-format.md. It needs the Python standard library, pyca `cryptography` (>= 48, for
ML-DSA-65) and the `openssl` command (3.0 or later, for `openssl ts -verify`); nothing else.

    python3 reference-verifier.py BUNDLE.zip [--trusted-key PEM ...] [--tsa-ca PEM]

It prints each failure as `FAIL [check] member: detail` (check names as in docs/bundle-format.md),
the bundle digest, whether the signer key and the TSA CA were pinned, and a verdict; it exits 0
if the bundle verifies and 1 if not (malformed input included).

What it checks, by step of docs/bundle-format.md "Verifying":
  1-3  no duplicate names, members of at most 128 MiB, CRCs (zipfile), no encrypted member;
       `manifest.json` is the canonical JCS manifest of exactly the ZIP's members with their
       SHA-256 and size (nothing else is read otherwise); the required members exist; every
       JSON member is canonical JCS.
  5-6  each keys/<key_id>.pem is the canonical PEM of an ML-DSA-65 key with that key_id. The
       trusted signer keys are the pinned ones (--trusted-key) if given, else the bundled
       ones, and the TSA CA is --tsa-ca if given, else tsa-ca.pem: the output says which.
       Unpinned, a bundle re-signed end to end with someone else's key also passes.
  7    main and earlier checkpoints: the `checkpoint` body is exactly the section 6 text of
       the record's fields, `checkpoint.sig` is the record's signature, which verifies
       (ML-DSA-65, pure, empty context) under the trusted key the record names; every token
       `checkpoint[.<n>].tsr` verifies over the body bytes with `openssl ts -verify -attime
       <genTime>` (openssl otherwise checks the certificates at the current time, and a TSA
       certificate that expired since still proves the past), and there is at least one.
  8    each earlier checkpoint (same origin, folder = tree size) has a consistency proof
       that names both trees and verifies (RFC 9162), and each proof has its checkpoint.
  9    each entry: the entry hash recomputes (spec section 3), the entry signature (if any)
       verifies over TAG_ENTRY_SIGNATURE || entry_hash, payload and salt (if present, i.e.
       not redacted or erased) give payload_hash, a per-entry token (if any) verifies over
       the 32 entry-hash bytes, and the inclusion proof names the entry and the main tree
       and leads to the main root (RFC 9162). Merkle proofs are checked by recomputing the
       RFC's own recursive definitions, PATH (2.1.3.1) and PROOF (2.1.4.1), from the end.
  10   chain links where both ends are bundled (`prev_hash`; `agent_prev_hash` per agent),
       zero links where a chain starts, and the chain head if the last entry is bundled.

Why reading JSON instead of Avro is sound. This script decodes no Avro: it takes each record
from its rendering (`entries/<seq>.json`, `checkpoint.json`: the record decoded with its
writer schema, byte strings as lowercase hex). Nothing is hashed or signed over Avro bytes
(docs/spec.md section 1, "Nothing is hashed over Avro bytes"; docs/decisions.md D2): the
entry hash is over the JCS view of the record's fields, the entry signature and the Merkle
leaf over that hash, and the checkpoint signature and tokens over the `checkpoint` bytes. So a
rendering whose hash, signature and proofs verify states exactly the fields that were signed.
The flip side: the `.avro` members are only bound by the manifest, so that they decode (with
`schemas/`) to these renderings, step 4 and [render], is left to `ledgerstream verify-bundle`,
as are bytes outside the ZIP members and the other limits (1), member names (3), approvals
(9a; an entry with approvals is reported as not checked), selection.json (11) and links (12).
The `payload` field of `entries/<seq>.json`, a parsed copy for readers, is not checked either:
`entry.action.payload` is what the commitment covers.

JCS is done by hand (`jcs`): keys sorted by UTF-16 code units, strings escaped as ES6's
JSON.stringify does, numbers as IEEE doubles in ES6 form (payload renderings may hold floats;
a float from 2^53 up to 1e21 is written without exponent, and json.loads reads it as an int).
"""
import argparse, base64, hashlib, json, re, subprocess, sys, tempfile, zipfile  # noqa: E401
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

TAG_PAYLOAD, TAG_ENTRY = b"ledgerstream/v1/payload\0", b"ledgerstream/v1/entry\0"
TAG_ENTRY_SIGNATURE = b"ledgerstream/v1/entry-signature\0"
ZERO = "0" * 64


def es6(x: float) -> str:
    """ECMAScript's Number.prototype.toString(x), which RFC 8785 section 3.2.2.3 prescribes for numbers."""
    dec = Decimal(repr(x + 0.0)).normalize()  # repr: the shortest digits that round-trip, as in ES6; -0.0 + 0.0 is 0.0
    _, digits, exp = dec.as_tuple()  # |x| = 0.DIGITS * 10**n with n = len(digits) + exp; NaN and Infinity fail here
    if -6 < len(digits) + exp <= 21:
        return format(dec, "f")  # plain decimal notation
    d = "".join(map(str, digits))
    return ("-" if x < 0 else "") + d[0] + ("." + d[1:] if len(d) > 1 else "") + f"e{len(d) + exp - 1:+d}"


def jcs(v) -> str:
    """RFC 8785 (JCS) of a value as json.loads returns it; .encode() gives the UTF-8 bytes (a lone surrogate fails)."""
    if isinstance(v, float) or type(v) is int and abs(v) >= 2**53:  # numbers are IEEE doubles (RFC 8785 3.2.2.3)
        return es6(float(v))
    if isinstance(v, list):
        return "[" + ",".join(map(jcs, v)) + "]"
    if isinstance(v, dict):  # members sorted by the UTF-16 code units of their names
        return "{" + ",".join(jcs(k) + ":" + jcs(v[k]) for k in sorted(v, key=lambda k: k.encode("utf-16-be"))) + "}"
    return json.dumps(v, ensure_ascii=False)  # null, true, false, integers; strings escaped as ES6 JSON.stringify does


def sha256(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def path_root(i: int, n: int, leaf: bytes, path: list) -> bytes:
    """The root that the inclusion proof PATH(i, D[n]) (RFC 9162 2.1.3.1) gives from a leaf; pops path's end."""
    if n == 1:
        return leaf
    k, sib = 1 << (n - 1).bit_length() - 1, (path or [b""]).pop()  # k < n <= 2k; an exhausted path gives a wrong root
    left, right = (path_root(i, k, leaf, path), sib) if i < k else (sib, path_root(i - k, n - k, leaf, path))
    return sha256(b"\1", left, right)


def proof_roots(m: int, n: int, path: list, root1: bytes, whole: bool = True) -> tuple:
    """The (old, new) roots that the consistency proof PROOF(m, D[n]) (RFC 9162 2.1.4.1) gives; pops path's end."""
    if m == n:
        return (root1, root1) if whole else ((path or [b""]).pop(),) * 2
    k, sib = 1 << (n - 1).bit_length() - 1, (path or [b""]).pop()
    if m <= k:
        old, new = proof_roots(m, k, path, root1, whole)
        return old, sha256(b"\1", new, sib)
    old, new = proof_roots(m - k, n - k, path, root1, False)
    return sha256(b"\1", sib, old), sha256(b"\1", sib, new)


def included(p: dict, seq: int, entry_hash: bytes, size: int, root: str) -> bool:
    """[inclusion]: proofs/inclusion/<seq>.json names this entry and the main tree, and its path leads to the root."""
    leaf, path = sha256(b"\0", entry_hash), [bytes.fromhex(x) for x in p["path"]]
    names = [p["leaf_index"], p["tree_size"], p["root"], p["entry_hash"], p["leaf_hash"]]
    return names == [seq, size, root, entry_hash.hex(), leaf.hex()] and seq < size \
        and path_root(seq, size, leaf, path) == bytes.fromhex(root) and not path


def consistent(p: dict, old: dict, new: dict) -> bool:
    """[consistency]: the proof names both checkpoints' sizes and roots and shows that the new tree extends the old."""
    path, root1, size1 = [bytes.fromhex(x) for x in p["path"]], bytes.fromhex(old["root_hash"]), old["tree_size"]
    names = [p["size1"], p["root1"], p["size2"], p["root2"]]
    return names == [size1, old["root_hash"], new["tree_size"], new["root_hash"]] and 0 < size1 < new["tree_size"] \
        and proof_roots(size1, new["tree_size"], path, root1) == (root1, bytes.fromhex(new["root_hash"])) and not path


def token_ok(tsr: bytes, data: bytes, ca: bytes) -> bool:
    """An RFC 3161 token over `data`, checked by openssl against the CA at the token's own genTime."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, blob in (("t.tsr", tsr), ("data", data), ("ca.pem", ca)):
            Path(tmp, name).write_bytes(blob)
        ts = lambda *a: subprocess.run(["openssl", "ts", *a], cwd=tmp, capture_output=True, text=True)  # noqa: E731
        t = re.search(r"Time stamp: (\w+ +\d+ [\d:]+)\S* (\d+) GMT", ts("-reply", "-in", "t.tsr", "-text").stdout)
        if not t:
            return False
        at = datetime.strptime(f"{t[1]} {t[2]}", "%b %d %H:%M:%S %Y").replace(tzinfo=timezone.utc)
        done = ts("-verify", "-in", "t.tsr", "-data", "data", "-CAfile", "ca.pem", "-attime", str(int(at.timestamp())))
        return done.returncode == 0 and "Verification: OK" in done.stdout


def signed(keys: dict, kid: str, signature_hex: str, message: bytes) -> bool:
    try:
        return keys[kid].verify(bytes.fromhex(signature_hex), message) is None
    except (KeyError, ValueError, InvalidSignature):
        return False


def pick(d: dict | None, keys: str) -> dict | None:
    return None if d is None else {k: d[k] for k in keys.split()}


def entry_view(e: dict) -> dict:
    """docs/spec.md section 3, the object V, from the rendering (whose byte strings are already lowercase hex)."""
    return {"v": e["spec_version"], **pick(e, "seq prev_hash received_at agent_seq agent_prev_hash key_id"),
            "source": pick(e["source"], "topic partition offset"),
            "resolved_links": [pick(r, "agent_id event_id status seq entry_hash") for r in e["resolved_links"]],
            "action": {**pick(e["action"], "event_id agent_id session_id action_type payload_hash occurred_at offline"),
                       "links": [pick(x, "agent_id event_id relation") for x in e["action"]["links"]],
                       "policy": pick(e["action"]["policy"], "decision rule reason"),
                       "approvals": [pick(x, "request_id approver_id key_id decision approved_at signature")
                                     for x in e["action"]["approvals"]],
                       "trace": pick(e["action"]["trace"], "trace_id span_id parent_span_id"),
                       "producer": pick(e["action"]["producer"], "library version host pid adapter")}}


def verify(path: str, pinned_keys: list, pinned_ca: bytes | None) -> list:
    """The failures, each "[check] member: detail"; none means the bundle verifies. Malformed input raises."""
    problems = []
    expect = lambda ok, check, member, detail: ok or problems.append(f"[{check}] {member}: {detail}")  # noqa: E731
    with zipfile.ZipFile(path) as zf:  # [zip]: zipfile checks CRCs and refuses encrypted members
        infos = zf.infolist()
        if len({i.filename for i in infos}) != len(infos) or any(i.file_size > 128 << 20 for i in infos):
            return ["[zip] bundle: duplicate member names, or a member larger than 128 MiB"]
        m = {i.filename: zf.read(i) for i in infos}
    listed = set(m) - {"manifest.json"}  # [manifest]: exactly these members with their SHA-256 and size, else stop
    members = {n: {"sha256": hashlib.sha256(m[n]).hexdigest(), "size": len(m[n])} for n in listed}
    manifest = {"format": "ledgerstream-bundle", "format_version": 1, "spec_version": 1, "members": members}
    if m.get("manifest.json") != jcs(manifest).encode():
        return ["[manifest] manifest.json: not the canonical version 1 manifest of exactly these members and hashes"]
    print("bundle digest (SHA-256 of manifest.json):", hashlib.sha256(m["manifest.json"]).hexdigest())
    for name in sorted(listed | {"README.md", "selection.json", "tsa-ca.pem", "checkpoint"}):  # [structure]
        expect(name in m and (not name.endswith(".json") or jcs(json.loads(m[name])).encode() == m[name]),
               "structure", name, "missing, or JSON that is not canonical JCS")

    keys = {}
    for name in sorted(n for n in listed if n.startswith("keys/")):  # [key]
        key = load_pem_public_key(m[name])
        keys[kid := sha256(key.public_bytes_raw()).hex() if isinstance(key, MLDSA65PublicKey) else "-"] = key
        pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        expect((name, m[name]) == (f"keys/{kid}.pem", pem), "key", name, "not the canonical PEM of that ML-DSA-65 key")
    keys = {sha256(k.public_bytes_raw()).hex(): k for k in pinned_keys} if pinned_keys else keys
    ca = pinned_ca or m["tsa-ca.pem"]

    def checkpoint(prefix: str) -> dict:  # [checkpoint], [timestamp] of the main or an earlier checkpoint
        body, rec = m[prefix + "checkpoint"], json.loads(m[prefix + "checkpoint.json"])["checkpoint"]
        b64_root, sig = base64.b64encode(bytes.fromhex(rec["root_hash"])).decode(), m[prefix + "checkpoint.sig"]
        text = "%s\n%s\n%s\nchain-head %s\ntime %s\n" % (rec["origin"], rec["tree_size"], b64_root, rec["chain_head"],
                                                          rec["created_at"])  # docs/spec.md section 6
        expect((body, body.hex(), sig.hex(), 1) == (text.encode(), rec["body"], rec["signature"], rec["spec_version"]),
               "checkpoint", prefix + "checkpoint", "the body, checkpoint.sig and checkpoint.json do not agree")
        expect(signed(keys, rec["key_id"], rec["signature"], body), "checkpoint", prefix + "checkpoint.sig",
               f"no valid ML-DSA-65 signature by a trusted key {rec['key_id']}")
        tokens = [n for n in sorted(listed) if re.fullmatch(re.escape(prefix) + r"checkpoint(\.\d+)?\.tsr", n)]
        for name in tokens or [prefix + "checkpoint.tsr"]:
            expect(name in m and token_ok(m[name], body, ca), "timestamp", name, "missing, or openssl ts -verify fails")
        return rec

    main = checkpoint("")
    size, root = main["tree_size"], main["root_hash"]
    earlier = {f"proofs/consistency/{n.split('/')[1]}-{size}.json": n[:n.rindex("/") + 1] for n in listed
               if n.startswith("checkpoints/")}
    for name in sorted(set(earlier) | {n for n in listed if n.startswith("proofs/consistency/")}):  # [consistency]
        old = name in earlier and checkpoint(earlier[name])
        expect(old and earlier[name] == f"checkpoints/{old['tree_size']}/" and old["origin"] == main["origin"]
               and name in m and consistent(json.loads(m[name]), old, main),
               "consistency", name, "no earlier checkpoint for it, or it does not prove that the main tree extends it")

    entries = {}
    for seq in sorted(int(n[8:-5]) for n in listed if re.fullmatch(r"entries/\d+\.json", n)):
        name, proof_name = f"entries/{seq}.json", f"proofs/inclusion/{seq}.json"
        e, p = json.loads(m[name])["entry"], json.loads(m[proof_name])
        a, h = e["action"], sha256(TAG_ENTRY, jcs(entry_view(e)).encode())
        expect(f"entries/{seq}.avro" in m and (e["seq"], e["spec_version"], e["entry_hash"]) == (seq, 1, h.hex()),
               "entry_hash", name, "no .avro, seq or spec_version is wrong, or entry_hash does not recompute")
        expect(e["signature"] is None or signed(keys, e["key_id"], e["signature"], TAG_ENTRY_SIGNATURE + h),
               "signature", name, f"no valid ML-DSA-65 signature by a trusted key {e['key_id']}")
        payload, salt = a["payload"], a["payload_salt"]  # both or neither
        expect(payload is None and salt is None or None not in (payload, salt) and a["payload_hash"] == sha256(
            TAG_PAYLOAD, bytes.fromhex(salt), bytes.fromhex(payload)).hex(), "payload", name, "payload_hash fails")
        expect(e["timestamp_token"] is None or token_ok(bytes.fromhex(e["timestamp_token"]), h, ca),
               "timestamp", name, "the entry's own token does not verify over its entry hash")
        expect(included(p, seq, h, size, root), "inclusion", proof_name, "does not lead to the main checkpoint's root")
        if a["approvals"] or (a["policy"] or {}).get("decision") == "approved":
            print(f"NOTE: {name} carries approvals, which this script does not check (ledgerstream verify-bundle does)")
        entries[seq] = e

    agents = {(e["action"]["agent_id"], e["agent_seq"]): e["entry_hash"] for e in entries.values()}
    for seq, e in entries.items():  # [chain]: links where both ends are bundled; zeros where a chain starts
        prev = ZERO if seq == 0 else entries.get(seq - 1, {}).get("entry_hash", e["prev_hash"])
        agent_prev = agents.get((e["action"]["agent_id"], e["agent_seq"] - 1), e["agent_prev_hash"])
        expect((prev, ZERO if e["agent_seq"] == 0 else agent_prev) == (e["prev_hash"], e["agent_prev_hash"]),
               "chain", f"entries/{seq}.json", "prev_hash or agent_prev_hash is not the previous entry's hash")
    expect(entries and (size - 1 not in entries or entries[size - 1]["entry_hash"] == main["chain_head"]),
           "chain", "checkpoint", "no entries, or the chain head is not the entry hash of the last entry")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description="Verify a ledgerstream evidence bundle offline (docs/bundle-format.md).")
    ap.add_argument("bundle")
    ap.add_argument("--trusted-key", action="append", default=[], metavar="PEM", help="pinned signer key (repeatable)")
    ap.add_argument("--tsa-ca", metavar="PEM", help="pinned TSA CA certificate(s)")
    args = ap.parse_args()
    pinned = [load_pem_public_key(Path(p).read_bytes()) for p in args.trusted_key]
    try:
        problems = verify(args.bundle, pinned, args.tsa_ca and Path(args.tsa_ca).read_bytes())
    except Exception as exc:  # noqa: BLE001 (anything malformed: the bundle does not verify)
        problems = [f"[structure] bundle: malformed ({type(exc).__name__}: {exc})"]
    print("".join(f"FAIL {p}\n" for p in problems), end="")
    print("signer key:", "PINNED (--trusted-key)" if pinned else "NOT PINNED (the bundle's own keys/ were trusted)")
    print("TSA CA: PINNED (--tsa-ca)" if args.tsa_ca else "TSA CA: NOT PINNED: the bundle's own tsa-ca.pem was trusted")
    print(f"FAILED: {len(problems)} problem(s)" if problems else "OK: the bundle verifies")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
