"""The signed-alert vector (tests/vectors/alert_signature/alert_v1.json) checked the way a
third party would: pyca/cryptography for ML-DSA-65, hashlib for the key id, and the signing
input rebuilt here from docs/spec.md section 10 with the standard json module (JCS for an
object of strings and small integers), never through ledgerstream.core.alert_signature.
The last test only checks that ledgerstream itself agrees with this independent oracle."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey

pytestmark = pytest.mark.unit

VECTOR = Path(__file__).resolve().parents[1] / "vectors" / "alert_signature" / "alert_v1.json"
TAG = b"ledgerstream/v1/alert-signature\x00"
#: the signed fields, docs/spec.md section 10 (every Alert field except the signature)
SIGNED_FIELDS = ("alert_id", "kind", "severity", "seq_from", "seq_to", "agent_id", "detail", "evidence",
                 "verifier_id", "time", "key_id")


@pytest.fixture(scope="module")
def vector() -> dict:
    return json.loads(VECTOR.read_text(encoding="utf-8"))


def _signing_input(alert: dict) -> bytes:
    """TAG || JCS(view): for strings, integers below 2**53, null and objects with ASCII keys,
    RFC 8785 is json.dumps with sorted keys, no whitespace and raw UTF-8 (no ASCII escaping)."""
    view = {name: alert[name] for name in SIGNED_FIELDS}
    for value in (view["seq_from"], view["seq_to"], view["time"]):
        assert value is None or (isinstance(value, int) and abs(value) < 2**53)
    return TAG + json.dumps(view, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def test_the_signature_verifies_with_pyca_alone(vector: dict) -> None:
    public = bytes.fromhex(vector["public_key"])
    message = bytes.fromhex(vector["signing_input"])
    signature = bytes.fromhex(vector["signature"])
    assert len(public) == 1952 and len(signature) == 3309
    MLDSA65PublicKey.from_public_bytes(public).verify(signature, message)  # raises if invalid
    assert vector["alert"]["signature"] == vector["signature"]


def test_key_id_and_signing_input_follow_the_spec(vector: dict) -> None:
    public = bytes.fromhex(vector["public_key"])
    assert vector["key_id"] == hashlib.sha256(public).hexdigest() == vector["alert"]["key_id"]
    assert _signing_input(vector["alert"]) == bytes.fromhex(vector["signing_input"])
    assert bytes.fromhex(vector["signing_input"]).startswith(TAG)
    # the seed is the vector's own test key: it derives the public key (FIPS 204 KeyGen from xi)
    seeded = MLDSA65PrivateKey.from_seed_bytes(bytes.fromhex(vector["seed"]))
    assert seeded.public_key().public_bytes_raw() == public


@pytest.mark.parametrize("field,value", [
    ("kind", "all_clear"), ("severity", "info"), ("seq_to", 8), ("detail", "nothing to see"),
    ("verifier_id", "v2"), ("time", 1767225600000001), ("agent_id", None), ("evidence", {}),
])
def test_any_changed_field_breaks_the_signature(vector: dict, field: str, value: object) -> None:
    alert = {**vector["alert"], field: value}
    with pytest.raises(InvalidSignature):
        MLDSA65PublicKey.from_public_bytes(bytes.fromhex(vector["public_key"])).verify(
            bytes.fromhex(vector["signature"]), _signing_input(alert))


def test_the_wire_record_and_ledgerstream_agree_with_the_oracle(vector: dict) -> None:
    from ledgerstream.core import mldsa
    from ledgerstream.core.wire import codec
    from ledgerstream.core.alert_signature import VerifierKey, alert_signing_input, check_alert

    _, record = codec.decode(bytes.fromhex(vector["record"]), expect="Alert")
    assert record["signature"].hex() == vector["signature"]
    assert {k: record[k] for k in SIGNED_FIELDS} == {k: vector["alert"][k] for k in SIGNED_FIELDS}
    assert alert_signing_input(record) == bytes.fromhex(vector["signing_input"])
    pub = mldsa.PublicKey.from_bytes(bytes.fromhex(vector["public_key"]))
    assert check_alert(record, {pub.key_id: VerifierKey("v1", pub)}).verdict.value == "verified"
