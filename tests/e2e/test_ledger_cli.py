"""Issue #5 acceptance through the CLI on the dev stack: show, prove, checkpoints export.

Each output is checked by something that is not the project's own verification code:
pyca's ML-DSA-65 for ``show``, the independent RFC 9162 checker in tests/support for
``prove``, and ``openssl ts -verify`` for an exported checkpoint.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PublicKey

from ledgerstream.core.topic_reader import read_partition
from tests.support import rfc9162_checker as rfc9162
from conftest import stack_kafka_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLI = [sys.executable, "-m", "ledgerstream.cli.main"]


def cli(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, check=check, timeout=300)


@pytest.fixture(scope="module")
def ledger(dev_stack: dict) -> dict:
    """At least 40 entries and an anchored checkpoint covering them."""
    from confluent_kafka import Producer

    from tests.support.actions import encode_action

    p = Producer(stack_kafka_config(dev_stack, "producer"))
    for i in range(40):
        agent = f"cli-agent-{i % 3}"
        p.produce(dev_stack["topics"]["actions"], encode_action(agent_id=agent), key=agent.encode())
    assert p.flush(30) == 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        cps = json.loads(cli(dev_stack["env"], "checkpoints", "list", "--json").stdout)
        anchored = [c for c in cps if c["anchored"] and c["tree_size"] >= 40]
        if anchored:
            return {"env": dev_stack["env"], "checkpoint": anchored[-1]}
        time.sleep(1)
    raise AssertionError(f"no anchored checkpoint covering 40 entries: {cps}")


def test_show_signed_message_verifies_with_pyca(ledger: dict) -> None:
    out = json.loads(cli(ledger["env"], "show", "--seq", "7", "--json").stdout)
    assert out["seq"] == 7
    pub = MLDSA65PublicKey.from_public_bytes(bytes.fromhex(out["public_key_hex"]))
    pub.verify(bytes.fromhex(out["signature_hex"]), bytes.fromhex(out["signed_message_hex"]))
    assert bytes.fromhex(out["signed_message_hex"]).endswith(bytes.fromhex(out["entry_hash"]))
    tampered = bytearray.fromhex(out["signed_message_hex"])
    tampered[-1] ^= 1
    with pytest.raises(InvalidSignature):
        pub.verify(bytes.fromhex(out["signature_hex"]), bytes(tampered))


def test_inclusion_proof_verifies_against_the_checkpoint_root(ledger: dict) -> None:
    size = ledger["checkpoint"]["tree_size"]
    for seq in (0, 13, size - 1):
        p = json.loads(cli(ledger["env"], "prove", "inclusion", "--seq", str(seq), "--tree-size", str(size),
                           "--json").stdout)
        assert set(p) >= {"leaf_index", "tree_size", "leaf_hash", "root_hash", "audit_path"}
        assert p["root_hash"] == ledger["checkpoint"]["root_hash"]
        assert bytes.fromhex(p["leaf_hash"]) == rfc9162.hash_leaf(bytes.fromhex(p["entry_hash"]))
        path = [bytes.fromhex(h) for h in p["audit_path"]]
        rfc9162.verify_inclusion(bytes.fromhex(p["leaf_hash"]), p["leaf_index"], p["tree_size"], path,
                                 bytes.fromhex(p["root_hash"]))
        if path:
            path[0] = bytes(32)
            with pytest.raises(rfc9162.ProofFailed):
                rfc9162.verify_inclusion(bytes.fromhex(p["leaf_hash"]), p["leaf_index"], p["tree_size"], path,
                                         bytes.fromhex(p["root_hash"]))


def test_consistency_proof_verifies(ledger: dict) -> None:
    size = ledger["checkpoint"]["tree_size"]
    p = json.loads(cli(ledger["env"], "prove", "consistency", "--from", "11", "--to", str(size), "--json").stdout)
    assert set(p) >= {"first_size", "second_size", "first_root", "second_root", "consistency_path"}
    rfc9162.verify_consistency(11, size, bytes.fromhex(p["first_root"]), bytes.fromhex(p["second_root"]),
                               [bytes.fromhex(h) for h in p["consistency_path"]])
    assert p["second_root"] == ledger["checkpoint"]["root_hash"]


def test_exported_checkpoint_passes_openssl_ts_verify(ledger: dict, tmp_path: Path) -> None:
    size = ledger["checkpoint"]["tree_size"]
    cli(ledger["env"], "checkpoints", "export", "--tree-size", str(size), "--out", str(tmp_path))
    for name in ("checkpoint", "checkpoint.tsr", "tsa-ca.pem", "checkpoint.sig", "signer.pub.pem"):
        assert (tmp_path / name).exists(), name
    ok = subprocess.run(["openssl", "ts", "-verify", "-data", str(tmp_path / "checkpoint"), "-in",
                         str(tmp_path / "checkpoint.tsr"), "-CAfile", str(tmp_path / "tsa-ca.pem")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout
    body = (tmp_path / "checkpoint").read_bytes()
    assert body.split(b"\n")[1] == str(size).encode()
    pub = MLDSA65PublicKey.from_public_bytes((tmp_path / "signer.pub.raw").read_bytes())
    pub.verify((tmp_path / "checkpoint.sig").read_bytes(), body)


def test_missing_entry_and_bad_sizes_fail_cleanly(ledger: dict) -> None:
    r = cli(ledger["env"], "show", "--seq", "999999", "--json", check=False)
    assert r.returncode == 1 and "no entry with seq" in r.stderr
    r = cli(ledger["env"], "prove", "consistency", "--from", "5", "--to", "999999", check=False)
    assert r.returncode == 1 and "ledger size" in r.stderr
