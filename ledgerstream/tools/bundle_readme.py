'''README.md of an evidence bundle: how a reader verifies it by hand, without ledgerstream.

Why generated per bundle: the reader gets the actual key ids, sizes and member names to
type, and the two Python snippets are run against real bundles by the tests.
'''
from __future__ import annotations

import base64

_PROOF_SNIPPET = '''import base64, hashlib, json, pathlib
H = lambda b: hashlib.sha256(b).digest()
d = pathlib.Path(".")
manifest = json.loads((d / "manifest.json").read_bytes())
for name, m in manifest["members"].items():                   # every member, as listed
    assert H((d / name).read_bytes()).hex() == m["sha256"], name
lines = (d / "checkpoint").read_text().split("\\n")
size, root = int(lines[1]), base64.b64decode(lines[2])         # the signed tree head
proofs = sorted(d.glob("proofs/inclusion/*.json"))
for p in proofs:
    pr = json.loads(p.read_bytes())
    e = json.loads((d / "entries" / p.name).read_bytes())["entry"]
    node = H(b"\\x00" + bytes.fromhex(e["entry_hash"]))         # RFC 9162 leaf hash
    fn, sn = pr["leaf_index"], size - 1
    for sibling in map(bytes.fromhex, pr["path"]):             # RFC 9162 2.1.3.2
        if fn & 1 or fn == sn:
            node = H(b"\\x01" + sibling + node)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = H(b"\\x01" + node + sibling)
        fn, sn = fn >> 1, sn >> 1
    assert pr["leaf_index"] == e["seq"] and pr["tree_size"] == size and node == root, p
print("manifest and", len(proofs), "inclusion proofs OK")'''

_SIGNATURE_SNIPPET = '''import json, pathlib
from cryptography.hazmat.primitives.serialization import load_pem_public_key
d = pathlib.Path(".")
key = lambda key_id: load_pem_public_key((d / "keys" / f"{key_id}.pem").read_bytes())
cp = json.loads((d / "checkpoint.json").read_bytes())["checkpoint"]
key(cp["key_id"]).verify((d / "checkpoint.sig").read_bytes(), (d / "checkpoint").read_bytes())
for f in sorted(d.glob("entries/*.json")):
    e = json.loads(f.read_bytes())["entry"]
    if e["signature"]:                                          # null in checkpoint signing mode
        message = b"ledgerstream/v1/entry-signature\\x00" + bytes.fromhex(e["entry_hash"])
        key(e["key_id"]).verify(bytes.fromhex(e["signature"]), message)
print("ML-DSA-65 signatures OK")'''


def render_readme(*, seqs: list[int], checkpoint_size: int, origin: str, root: bytes,
                  key_ids: list[str], tokens: int, earlier: list[int], redacted: bool) -> bytes:
    shown = ", ".join(map(str, seqs[:20])) + (" ..." if len(seqs) > 20 else "")
    keys = "\n".join(f"- `{k}`" for k in key_ids)
    first_key = key_ids[0]
    earlier_text = (f"Earlier checkpoints that first published some of these entries are under "
                    f"`checkpoints/<size>/` (sizes {', '.join(map(str, earlier))}), each with its own token and a "
                    f"consistency proof `proofs/consistency/<size>-{checkpoint_size}.json`: their tokens give "
                    f"an earlier time bound for the entries they cover.\n\n") if earlier else ""
    redaction = ("**Payloads are redacted** (`--redact-payloads`): every entry keeps `payload_hash`, but "
                 "`payload` and `payload_salt` are null. The entry hash never covers them, so every hash, "
                 "signature and proof still verifies; the payload commitment cannot be checked.\n\n") if redacted else ""
    text = f"""# ledgerstream evidence bundle

{len(seqs)} ledger entries (seq {shown}) of ledger `{origin}`, with the signed checkpoint of tree
size {checkpoint_size} (root `{root.hex()}`, base64 `{base64.b64encode(root).decode()}`)
that covers them all, {tokens} RFC 3161 token(s) over that checkpoint, an inclusion proof per
entry, the TSA CA, the signer public key(s) and the Avro writer schemas. The layout and every
check are specified in `docs/bundle-format.md` of ledgerstream.

{redaction}{earlier_text}## Verify with ledgerstream

    ledgerstream verify-bundle THIS.zip --trusted-key signer.pub.pem --tsa-ca tsa-ca.pem

**Trust.** Without `--trusted-key` / `--tsa-ca` the verifier trusts the keys in `keys/` and
`tsa-ca.pem` *inside the bundle* and prints their key ids: anyone can build a consistent bundle
with their own keys. Pin the signer key and the TSA CA you obtained independently. The bundle's
identity is the SHA-256 of `manifest.json` (printed by `export bundle` and `verify-bundle`):
compare it with the value recorded when the bundle was exported.

Signer key id(s) (hex SHA-256 of the raw 1952-byte ML-DSA-65 public key):
{keys}

## Verify by hand

Unzip the bundle and work in its folder.

1. Timestamp: the token covers the exact bytes of `checkpoint` (the signed note body).

       openssl ts -verify -data checkpoint -in checkpoint.tsr -CAfile tsa-ca.pem

2. Checkpoint signature: ML-DSA-65 (FIPS 204, pure, empty context) over the bytes of
   `checkpoint`. With OpenSSL 3.5 or later:

       openssl pkeyutl -verify -pubin -inkey keys/{first_key}.pem -rawin -in checkpoint -sigfile checkpoint.sig

   Entry signatures sign `"ledgerstream/v1/entry-signature" || 0x00 || entry_hash` (32 bytes).
   Both with pyca/cryptography (>= 48):

```python
{_SIGNATURE_SNIPPET}
```

3. Manifest and inclusion proofs (RFC 9162): every member's SHA-256, then each entry's leaf
   up to the root in `checkpoint` (line 3, base64):

```python
{_PROOF_SNIPPET}
```

4. Entry hashes: `entry_hash` = SHA-256(`"ledgerstream/v1/entry"` || 0x00 || RFC 8785 JSON of the
   entry's hash view); recompute it from `entries/<seq>.avro` (decoded with the schema in
   `schemas/`) as `docs/bundle-format.md` describes. Steps 2-3 trust the stored hash until then.
"""
    return text.encode("utf-8")
