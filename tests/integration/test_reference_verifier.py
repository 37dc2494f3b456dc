"""docs/reference-verifier.py, run as a stranger would (a subprocess of this venv's python), against real
bundles of a real ledger: the one of test_bundle_roundtrip (12 entries by 4 agents, signed entries,
checkpoints at 4, 8 and 12, each anchored by the dev TSA), exported whole, with --redact-payloads, and
for one agent. Tampered copies must exit 1 and name the failed check.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledgerstream.core import mldsa
from ledgerstream.tools import bundle_format as bf
from ledgerstream.tools.bundle_verify import verify_bundle
# the module-scoped fixtures (one ledger per module) and the ZIP helpers of the round-trip tests
from test_bundle_roundtrip import bundle, export, flip, ledger, members_of, rezip  # noqa: F401

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "reference-verifier.py"


def reference(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", str(SCRIPT), str(path), *args], capture_output=True, text=True,
                          timeout=300, cwd=path.parent)


def accepts(path: Path, *args: str) -> str:
    done = reference(path, *args)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "OK: the bundle verifies", done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    return done.stdout


def rejects(blob: bytes, tmp_path: Path, *expected: str, args: tuple[str, ...] = ()) -> str:
    path = tmp_path / "tampered.zip"
    path.write_bytes(blob)
    done = reference(path, *args)
    assert done.returncode == 1 and done.stdout.splitlines()[-1].startswith("FAILED"), done.stdout + done.stderr
    for text in expected:
        assert text in done.stdout, (text, done.stdout)
    return done.stdout


def key_id(ledger: dict[str, Any]) -> str:
    return mldsa.load_public_key(ledger["pub"].read_bytes()).key_id


def edit_json(members: dict[str, bytes], name: str, change) -> dict[str, bytes]:
    """A copy of the members with one JSON member changed and written back as canonical JCS."""
    doc = json.loads(members[name])
    change(doc)
    return {**members, name: bf.canonical(doc)}


def flip_hex(text: str, at: int = 0) -> str:
    return text[:at] + format(int(text[at], 16) ^ 1, "x") + text[at + 1:]


# --- real bundles --------------------------------------------------------------------------------------

def test_accepts_real_bundles_and_says_whether_the_key_was_pinned(ledger, bundle):
    names = set(members_of(bundle))
    assert {"checkpoints/4/checkpoint", "checkpoints/8/checkpoint", "proofs/consistency/4-12.json",
            "proofs/consistency/8-12.json"} <= names  # earlier checkpoints: consistency is exercised
    entry = json.loads(members_of(bundle)["entries/4.json"])["entry"]
    assert entry["signature"] and entry["action"]["payload"] and entry["action"]["payload_salt"]

    out = accepts(bundle)
    assert "signer key: NOT PINNED" in out and "TSA CA: NOT PINNED" in out
    digest = next(line for line in out.splitlines() if line.startswith("bundle digest"))
    assert digest.split()[-1] == hashlib.sha256(members_of(bundle)[bf.MANIFEST]).hexdigest()
    out = accepts(bundle, "--trusted-key", str(ledger["pub"]), "--tsa-ca", str(ledger["ca"]))
    assert "signer key: PINNED" in out and "TSA CA: PINNED" in out


def test_accepts_a_redacted_bundle(ledger):
    path = export(ledger, "ref-redacted.zip", "--redact-payloads")
    entry = json.loads(members_of(path)["entries/0.json"])["entry"]
    assert entry["action"]["payload"] is None and entry["action"]["payload_salt"] is None
    accepts(path, "--trusted-key", str(ledger["pub"]), "--tsa-ca", str(ledger["ca"]))


def test_accepts_a_one_agent_bundle(ledger):
    """The writer's entries 4 and 5: a chain link between them, and the earlier checkpoint of size 8."""
    path = export(ledger, "ref-writer.zip", "--agent", "writer")
    names = set(members_of(path))
    assert {n for n in names if n.startswith("entries/")} == {"entries/4.avro", "entries/4.json", "entries/5.avro",
                                                              "entries/5.json"}
    assert "proofs/consistency/8-12.json" in names
    accepts(path, "--trusted-key", str(ledger["pub"]))


# --- tampering -----------------------------------------------------------------------------------------

def test_rejects_a_flipped_byte_without_a_new_manifest(bundle, tmp_path):
    members = members_of(bundle)
    for name in ("entries/2.json", "entries/2.avro", "checkpoint", "keys/" + next(
            n.split("/")[1] for n in members if n.startswith("keys/")), bf.MANIFEST):
        rejects(rezip({**members, name: flip(members[name], len(members[name]) // 2)}), tmp_path, "[manifest]")


def test_rejects_tampered_entries_behind_a_rewritten_manifest(bundle, tmp_path):
    members = members_of(bundle)

    def payload(doc):
        doc["entry"]["action"]["payload"] = flip_hex(doc["entry"]["action"]["payload"], 3)
    rejects(rezip(edit_json(members, "entries/2.json", payload), remanifest=True), tmp_path,
            "[payload] entries/2.json")

    def salt(doc):
        doc["entry"]["action"]["payload_salt"] = None
    rejects(rezip(edit_json(members, "entries/2.json", salt), remanifest=True), tmp_path, "[payload] entries/2.json")

    def signature(doc):
        doc["entry"]["signature"] = flip_hex(doc["entry"]["signature"], 100)
    rejects(rezip(edit_json(members, "entries/2.json", signature), remanifest=True), tmp_path,
            "[signature] entries/2.json")

    def action_type(doc):
        doc["entry"]["action"]["action_type"] = "data:read:users"
    out = rejects(rezip(edit_json(members, "entries/5.json", action_type), remanifest=True), tmp_path,
                  "[entry_hash] entries/5.json", "[signature] entries/5.json", "[inclusion] proofs/inclusion/5.json")
    assert "[payload]" not in out  # the commitment does not cover the action type

    def entry_hash(doc):  # a rewritten action with its own hash: the signature, proof and chain still catch it
        doc["entry"]["action"]["action_type"] = "data:read:users"
        doc["entry"]["entry_hash"] = "00" * 32
    rejects(rezip(edit_json(members, "entries/5.json", entry_hash), remanifest=True), tmp_path, "[entry_hash]")

    def prev_hash(doc):
        doc["entry"]["prev_hash"] = flip_hex(doc["entry"]["prev_hash"], 63)
    rejects(rezip(edit_json(members, "entries/6.json", prev_hash), remanifest=True), tmp_path,
            "[chain] entries/6.json", "[entry_hash] entries/6.json")

    rest = {n: d for n, d in members.items() if n != "proofs/inclusion/3.json"}
    rejects(rezip(rest, remanifest=True), tmp_path, "proofs/inclusion/3.json")


def test_rejects_tampered_proofs_behind_a_rewritten_manifest(bundle, tmp_path):
    members = members_of(bundle)

    def path_entry(doc):
        doc["path"][1] = flip_hex(doc["path"][1], 10)
    rejects(rezip(edit_json(members, "proofs/inclusion/7.json", path_entry), remanifest=True), tmp_path,
            "[inclusion] proofs/inclusion/7.json")
    rejects(rezip(edit_json(members, "proofs/consistency/4-12.json", path_entry), remanifest=True), tmp_path,
            "[consistency] proofs/consistency/4-12.json")

    def short(doc):
        doc["path"] = doc["path"][:-1]
    rejects(rezip(edit_json(members, "proofs/inclusion/7.json", short), remanifest=True), tmp_path,
            "[inclusion] proofs/inclusion/7.json")
    rest = {n: d for n, d in members.items() if n != "proofs/consistency/8-12.json"}
    rejects(rezip(rest, remanifest=True), tmp_path, "[consistency] proofs/consistency/8-12.json")


def test_rejects_tampered_checkpoints_behind_a_rewritten_manifest(bundle, tmp_path):
    members = members_of(bundle)
    body = members["checkpoint"]
    at = body.index(b"\ntime ") + 7  # a digit of the time line: still a well-formed body
    rejects(rezip({**members, "checkpoint": flip(body, at)}, remanifest=True), tmp_path,
            "[checkpoint] checkpoint:", "[checkpoint] checkpoint.sig", "[timestamp] checkpoint.tsr")
    rejects(rezip({**members, "checkpoint.sig": flip(members["checkpoint.sig"], 1000)}, remanifest=True), tmp_path,
            "[checkpoint] checkpoint:")
    sig = flip(members["checkpoint.sig"], 1000)  # the same bad signature in both places

    def signature(doc):
        doc["checkpoint"]["signature"] = sig.hex()
    rejects(rezip({**edit_json(members, "checkpoint.json", signature), "checkpoint.sig": sig}, remanifest=True),
            tmp_path, "[checkpoint] checkpoint.sig")
    tsr = members["checkpoint.tsr"]
    rejects(rezip({**members, "checkpoint.tsr": flip(tsr, len(tsr) // 2)}, remanifest=True), tmp_path,
            "[timestamp] checkpoint.tsr")
    rejects(rezip({**members, "checkpoints/8/checkpoint.tsr": members["checkpoint.tsr"]}, remanifest=True), tmp_path,
            "[timestamp] checkpoints/8/checkpoint.tsr")  # a token over another body
    rest = {n: d for n, d in members.items() if n != "checkpoints/4/checkpoint.tsr"}
    rejects(rezip(rest, remanifest=True), tmp_path, "[timestamp] checkpoints/4/checkpoint.tsr")


def test_rejects_another_key_behind_a_rewritten_manifest(ledger, bundle, tmp_path):
    members = members_of(bundle)
    kid, other = key_id(ledger), mldsa.PrivateKey.generate().public_key()
    other_pem = mldsa.public_key_pem(other)
    # another key under the signer's name
    rejects(rezip({**members, f"keys/{kid}.pem": other_pem}, remanifest=True), tmp_path,
            f"[key] keys/{kid}.pem", "[checkpoint] checkpoint.sig", "[signature] entries/0.json")
    # another key under its own name, the signer's removed: nothing the bundle names is trusted any more
    swapped = {n: d for n, d in members.items() if not n.startswith("keys/")} | {f"keys/{other.key_id}.pem": other_pem}
    rejects(rezip(swapped, remanifest=True), tmp_path, "[checkpoint] checkpoint.sig", "[signature] entries/11.json")
    # a pinned key that is not the signer's
    pinned = tmp_path / "other.pub.pem"
    pinned.write_bytes(other_pem)
    out = rejects(bundle.read_bytes(), tmp_path, "[checkpoint] checkpoint.sig", "[signature] entries/3.json",
                  args=("--trusted-key", str(pinned)))
    assert "signer key: PINNED" in out


def test_rejects_another_tsa_ca(ledger, bundle, tmp_path):
    from ledgerstream.stack.devtsa import ensure_ca

    other_ca = ensure_ca(tmp_path / "tsa2").ca_cert  # another DEV CA
    rejects(bundle.read_bytes(), tmp_path, "[timestamp] checkpoint.tsr", "[timestamp] checkpoints/4/checkpoint.tsr",
            args=("--tsa-ca", str(other_ca)))
    members = members_of(bundle)
    rejects(rezip({**members, "tsa-ca.pem": other_ca.read_bytes()}, remanifest=True), tmp_path,
            "[timestamp] checkpoint.tsr")


def test_malformed_input_fails_with_exit_1(tmp_path):
    rejects(b"not a zip", tmp_path, "malformed")


def test_avro_members_are_bound_only_by_the_manifest(bundle, tmp_path):
    """The documented limit of the script (it reads the JSON renderings): a changed .avro behind a rewritten
    manifest passes it, and ledgerstream verify-bundle, which decodes and re-renders, catches it."""
    members = members_of(bundle)
    avro = members["entries/2.avro"]
    blob = rezip({**members, "entries/2.avro": flip(avro, len(avro) - 40)}, remanifest=True)
    path = tmp_path / "avro.zip"
    path.write_bytes(blob)
    accepts(path)
    assert not verify_bundle(blob).to_json()["ok"]


# --- the per-entry token path (not in this ledger's bundles) --------------------------------------------

def _script_module():
    spec = importlib.util.spec_from_file_location("reference_verifier", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_token_check_over_32_entry_hash_bytes_at_gen_time(dev_tsa, monkeypatch):
    from ledgerstream.core.timestamp import request_timestamp, verify_timestamp

    rv = _script_module()
    entry_hash = bytes(range(32))
    token = request_timestamp(dev_tsa.url, entry_hash)
    ca = dev_tsa.files.ca_cert.read_bytes()
    calls, run = [], subprocess.run
    monkeypatch.setattr(rv.subprocess, "run", lambda argv, **kw: calls.append(argv) or run(argv, **kw))
    assert rv.token_ok(token, entry_hash, ca)
    gen_time = verify_timestamp(token, entry_hash, ca).gen_time
    assert calls[-1][calls[-1].index("-attime") + 1] == str(int(gen_time.timestamp()))  # not the current time
    monkeypatch.undo()
    assert not rv.token_ok(token, bytes(32), ca)
    assert not rv.token_ok(flip(token, len(token) // 2), entry_hash, ca)
    assert not rv.token_ok(b"garbage", entry_hash, ca)
