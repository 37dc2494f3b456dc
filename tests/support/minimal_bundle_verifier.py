"""An independent, minimal evidence-bundle verifier written only from docs/spec.md and
docs/bundle-format.md, importing nothing from ledgerstream.

Why: if this file can verify a real bundle, the documents suffice for a third party to
re-implement verification. It uses hashlib, json, zipfile, fastavro (Avro bodies with the
bundled schemas), rfc8785 (JCS), cryptography (ML-DSA-65) and `openssl ts -verify`.
``verify(path)`` returns a list of problems; empty means the bundle verifies.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import tempfile
import zipfile
from pathlib import Path

import fastavro
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastavro.schema import fingerprint, parse_schema

TAG_PAYLOAD = b"ledgerstream/v1/payload\x00"
TAG_ENTRY = b"ledgerstream/v1/entry\x00"
TAG_ENTRY_SIGNATURE = b"ledgerstream/v1/entry-signature\x00"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def root_from_path(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        raise ValueError("index beyond tree")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ValueError("proof too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ValueError("proof too short")
    return r


def consistent(size1: int, size2: int, root1: bytes, root2: bytes, path: list[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2 for 0 < size1 < size2."""
    if not 0 < size1 < size2 or not path:
        return False
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is the first node
        path = [root1, *path]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == root1 and sr == root2 and sn == 0


def hx(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def entry_view(e: dict) -> dict:
    """docs/spec.md section 3, the object V."""
    a = e["action"]
    policy, trace, prod = a["policy"], a["trace"], a["producer"]
    return {
        "v": e["spec_version"], "seq": e["seq"], "prev_hash": hx(e["prev_hash"]), "received_at": e["received_at"],
        "source": {k: e["source"][k] for k in ("topic", "partition", "offset")},
        "agent_seq": e["agent_seq"], "agent_prev_hash": hx(e["agent_prev_hash"]),
        "resolved_links": [{"agent_id": r["agent_id"], "event_id": r["event_id"], "status": r["status"],
                            "seq": r["seq"], "entry_hash": hx(r["entry_hash"])} for r in e["resolved_links"]],
        "key_id": e["key_id"],
        "action": {
            "event_id": a["event_id"], "agent_id": a["agent_id"], "session_id": a["session_id"],
            "action_type": a["action_type"], "payload_hash": hx(a["payload_hash"]), "occurred_at": a["occurred_at"],
            "links": [{k: link[k] for k in ("agent_id", "event_id", "relation")} for link in a["links"]],
            "policy": None if policy is None else {k: policy[k] for k in ("decision", "rule", "reason")},
            "approvals": [{"request_id": x["request_id"], "approver_id": x["approver_id"], "key_id": x["key_id"],
                           "decision": x["decision"], "approved_at": x["approved_at"], "signature": hx(x["signature"])}
                          for x in a["approvals"]],
            "trace": None if trace is None else {k: trace[k] for k in ("trace_id", "span_id", "parent_span_id")},
            "producer": {k: prod[k] for k in ("library", "version", "host", "pid", "adapter")},
            "offline": a["offline"],
        },
    }


def load_schemas(files: dict[str, bytes], problems: list[str]) -> dict[bytes, dict]:
    named: dict = {}
    out: dict[bytes, dict] = {}
    pending = dict(files)
    while pending:
        progress = False
        for name, text in list(pending.items()):
            try:
                parsed = parse_schema(json.loads(text), named_schemas=named)
            except fastavro.schema.UnknownType:
                continue
            fp = bytes.fromhex(fingerprint(text.decode(), "CRC-64-AVRO"))  # fastavro: little-endian hex
            if not name.endswith(f".{fp.hex()}.avsc"):
                problems.append(f"{name}: fingerprint {fp.hex()} differs from its name")
            out[fp] = parsed
            del pending[name]
            progress = True
        if not progress:
            problems.append(f"unresolvable schemas {sorted(pending)}")
            break
    return out


def decode(data: bytes, schemas: dict[bytes, dict]) -> dict:
    if data[:2] != b"\xc3\x01" or data[2:10] not in schemas:
        raise ValueError("not single-object encoded with a bundled schema")
    body = io.BytesIO(data[10:])
    record = fastavro.schemaless_reader(body, schemas[data[2:10]], None)
    if body.tell() != len(data) - 10:
        raise ValueError("trailing bytes")
    return record


def openssl_ts_ok(tsr: bytes, data: bytes, ca: bytes) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "data").write_bytes(data)
        (d / "t.tsr").write_bytes(tsr)
        (d / "ca.pem").write_bytes(ca)
        done = subprocess.run(["openssl", "ts", "-verify", "-data", "data", "-in", "t.tsr", "-CAfile", "ca.pem"],
                              cwd=d, capture_output=True, text=True)
        return done.returncode == 0 and "Verification: OK" in done.stdout


def verify(path: Path) -> list[str]:
    try:
        return _verify(path)
    except Exception as exc:  # noqa: BLE001  (malformed input: the bundle does not verify)
        return [f"malformed bundle: {type(exc).__name__}: {exc}"]


def _verify(path: Path) -> list[str]:
    problems: list[str] = []
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if len(names) != len(set(names)):
            return ["duplicate members"]
        m = {n: zf.read(n) for n in names}

    # manifest: canonical, closed member list, hashes
    raw_manifest = m.get("manifest.json", b"")
    manifest = json.loads(raw_manifest or b"{}")
    if rfc8785.dumps(manifest) != raw_manifest or manifest.get("format") != "ledgerstream-bundle" \
            or manifest.get("format_version") != 1 or manifest.get("spec_version") != 1:
        return ["manifest.json is not a canonical v1 manifest"]
    listed = manifest["members"]
    if set(listed) != set(m) - {"manifest.json"}:
        return [f"member set differs from the manifest: {sorted(set(listed) ^ (set(m) - {'manifest.json'}))}"]
    for name, want in listed.items():
        if want != {"sha256": hashlib.sha256(m[name]).hexdigest(), "size": len(m[name])}:
            problems.append(f"{name}: hash or size differs from the manifest")

    schemas = load_schemas({n: d for n, d in m.items() if n.startswith("schemas/")}, problems)
    keys = {}
    for name in (n for n in m if n.startswith("keys/")):
        key = load_pem_public_key(m[name])
        key_id = hashlib.sha256(key.public_bytes_raw()).hexdigest()
        if name != f"keys/{key_id}.pem":
            problems.append(f"{name}: key_id is {key_id}")
        keys[key_id] = key
    ca = m["tsa-ca.pem"]

    def check_signature(key_id: str, sig: bytes, message: bytes, what: str) -> None:
        try:
            keys[key_id].verify(sig, message)
        except (KeyError, InvalidSignature):
            problems.append(f"{what}: ML-DSA-65 signature does not verify under {key_id[:16]}")

    def checkpoint(prefix: str) -> tuple[int, bytes]:
        body, sig = m[prefix + "checkpoint"], m[prefix + "checkpoint.sig"]
        rec = decode(m[prefix + "checkpoint.avro"], schemas)
        lines = body.decode().split("\n")
        size, root = int(lines[1]), base64.b64decode(lines[2])
        head, created = bytes.fromhex(lines[3].removeprefix("chain-head ")), int(lines[4].removeprefix("time "))
        if (rec["body"], rec["signature"], rec["origin"], rec["tree_size"], rec["root_hash"], rec["chain_head"],
                rec["created_at"]) != (body, sig, lines[0], size, root, head, created) or len(lines) != 6 or lines[5]:
            problems.append(f"{prefix}checkpoint: body, signature and record disagree")
        check_signature(rec["key_id"], sig, body, prefix + "checkpoint")
        tokens = [n for n in m if re.fullmatch(re.escape(prefix) + r"checkpoint(\.\d+)?\.tsr", n)]
        if not tokens:
            problems.append(f"{prefix}checkpoint: no token")
        for t in tokens:
            if not openssl_ts_ok(m[t], body, ca):
                problems.append(f"{t}: openssl ts -verify failed")
        return size, root

    size, root = checkpoint("")
    for name in m:
        if mt := re.fullmatch(r"checkpoints/(\d+)/checkpoint", name):
            size1, root1 = checkpoint(f"checkpoints/{mt.group(1)}/")
            doc = json.loads(m[f"proofs/consistency/{size1}-{size}.json"])
            path_nodes = [bytes.fromhex(h) for h in doc["path"]]
            if (doc["size1"], doc["root1"], doc["size2"], doc["root2"]) != (size1, root1.hex(), size, root.hex()) \
                    or not consistent(size1, size, root1, root, path_nodes):
                problems.append(f"consistency {size1}-{size} does not verify")

    for name in m:
        if not (mt := re.fullmatch(r"entries/(\d+)\.avro", name)):
            continue
        seq = int(mt.group(1))
        e = decode(m[name], schemas)
        h = sha256(TAG_ENTRY + rfc8785.dumps(entry_view(e)))
        if e["seq"] != seq or h != e["entry_hash"]:
            problems.append(f"{name}: entry hash does not recompute")
        if e["signature"] is not None:
            check_signature(e["key_id"], e["signature"], TAG_ENTRY_SIGNATURE + h, name)
        a = e["action"]
        if a["payload"] is not None and sha256(TAG_PAYLOAD + a["payload_salt"] + a["payload"]) != a["payload_hash"]:
            problems.append(f"{name}: payload commitment fails")
        if e["timestamp_token"] is not None and not openssl_ts_ok(e["timestamp_token"], h, ca):
            problems.append(f"{name}: entry token fails")
        proof = json.loads(m[f"proofs/inclusion/{seq}.json"])
        try:
            got = root_from_path(sha256(b"\x00" + h), seq, size, [bytes.fromhex(p) for p in proof["path"]])
        except ValueError as exc:
            problems.append(f"inclusion {seq}: {exc}")
            continue
        if got != root or proof["leaf_index"] != seq or proof["tree_size"] != size:
            problems.append(f"inclusion {seq}: proof does not reproduce the checkpoint root")
    return problems
