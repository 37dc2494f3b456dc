"""Signed alerts (core/alert_signature.py, docs/spec.md section 10): every field is covered by
the signature, unsigned alerts are never verified, a key only signs for its own verifier, and
the trusted keys come from options, the environment or the dev stack's key files."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ledgerstream.core import mldsa
from ledgerstream.core.wire import codec
from ledgerstream.core.alert_signature import (ENV_VERIFIER_KEYS, TAG_ALERT_SIGNATURE, Authenticity, VerifierKey,
                                               alert_signing_input, check_alert, load_alert_key, sign_alert,
                                               trusted_verifier_keys, verifier_key_path,
                                               verifier_public_key_path)
from ledgerstream.core.errors import ConfigError

pytestmark = pytest.mark.unit

V1 = mldsa.PrivateKey.from_seed(bytes([1]) * 32)
V2 = mldsa.PrivateKey.from_seed(bytes([2]) * 32)
OUTSIDER = mldsa.PrivateKey.from_seed(bytes([3]) * 32)
TRUSTED = {k.public_key().key_id: VerifierKey(vid, k.public_key()) for vid, k in (("v1", V1), ("v2", V2))}

ALERT: dict[str, Any] = {
    "alert_id": "a1", "kind": "gap", "severity": "critical", "seq_from": 3, "seq_to": 5, "agent_id": "bot",
    "detail": "missing 3..5", "evidence": {"expected": "3", "topic": "t.entries"}, "verifier_id": "v1",
    "time": 1_767_225_600_000_000,
}


def verdict(alert: dict[str, Any], trusted: Any = TRUSTED) -> tuple[str, str]:
    a = check_alert(alert, trusted)
    return a.verdict.value, a.reason


def test_signed_alert_verifies_and_survives_the_wire() -> None:
    signed = sign_alert(ALERT, V1)
    assert signed["key_id"] == V1.public_key().key_id and len(signed["signature"]) == mldsa.SIGNATURE_SIZE
    assert "signature" not in ALERT  # a copy
    assert verdict(signed) == ("verified", "signed")
    _, decoded = codec.decode(codec.encode("Alert", signed), expect="Alert")
    result = check_alert(decoded, TRUSTED)
    assert result.verdict is Authenticity.VERIFIED and not result.forged
    assert result.fields() == {"authenticity": "verified", "forged": False, "authenticity_reason": "signed"}


def test_the_signing_input_is_byte_exact() -> None:
    """Pinned bytes (docs/spec.md section 10): the tag, then JCS with sorted keys, nulls kept,
    key_id included, signature left out."""
    alert = {**ALERT, "agent_id": None, "key_id": "ab" * 32, "signature": b"ignored"}
    want = (b'ledgerstream/v1/alert-signature\x00{"agent_id":null,"alert_id":"a1","detail":"missing 3..5",'
            b'"evidence":{"expected":"3","topic":"t.entries"},"key_id":"' + b"ab" * 32 + b'","kind":"gap",'
            b'"seq_from":3,"seq_to":5,"severity":"critical","time":1767225600000000,"verifier_id":"v1"}')
    assert alert_signing_input(alert) == want
    assert TAG_ALERT_SIGNATURE == b"ledgerstream/v1/alert-signature\x00"
    # fields a later schema might add do not enter the message
    assert alert_signing_input({**alert, "new_field": "x"}) == want


TAMPERED = [
    ("alert_id", "a2"), ("kind", "all_clear"), ("severity", "info"), ("seq_from", 4), ("seq_from", None),
    ("seq_to", 6), ("agent_id", "other-bot"), ("agent_id", None), ("detail", "missing 3..6"),
    ("evidence", {"expected": "4", "topic": "t.entries"}), ("evidence", {"expected": "3", "topic": "t.entries", "x": "y"}),
    ("evidence", {}), ("time", 1_767_225_600_000_001),
]


@pytest.mark.parametrize("field,value", TAMPERED, ids=[f"{f}={v!r}" for f, v in TAMPERED])
def test_tampering_with_any_field_is_forged(field: str, value: Any) -> None:
    signed = sign_alert(ALERT, V1)
    assert verdict({**signed, field: value}) == ("forged", "bad_signature")


def test_tampering_with_verifier_key_id_or_signature_is_forged() -> None:
    signed = sign_alert(ALERT, V1)
    assert verdict({**signed, "verifier_id": "v2"}) == ("forged", "wrong_verifier")
    assert verdict({**signed, "verifier_id": "v9"}) == ("forged", "wrong_verifier")
    assert verdict({**signed, "key_id": V2.public_key().key_id}) == ("forged", "wrong_verifier")
    assert verdict({**signed, "key_id": "00" * 32}) == ("forged", "unknown_key")
    flipped = bytearray(signed["signature"])
    flipped[100] ^= 0x01
    assert verdict({**signed, "signature": bytes(flipped)}) == ("forged", "bad_signature")
    assert verdict({**signed, "signature": signed["signature"][:-1]}) == ("forged", "bad_signature")
    assert verdict({**signed, "signature": b""}) == ("forged", "bad_signature")
    # the same key, verifier v2's alert re-labelled as v1: v2's signature does not carry over
    v2_signed = sign_alert({**ALERT, "verifier_id": "v2"}, V2)
    assert verdict(v2_signed) == ("verified", "signed")
    assert verdict({**v2_signed, "verifier_id": "v1"}) == ("forged", "wrong_verifier")


def test_unsigned_alerts_are_not_verified() -> None:
    assert verdict(ALERT) == ("unsigned", "no_signature")
    assert verdict({**ALERT, "key_id": V1.public_key().key_id, "signature": None}) == ("unsigned", "no_signature")
    result = check_alert(ALERT, TRUSTED)
    assert result.forged and result.fields()["forged"] is True
    # a signature without a key id
    assert verdict({**sign_alert(ALERT, V1), "key_id": None}) == ("forged", "no_key_id")


def test_alerts_written_with_the_first_schema_decode_as_unsigned() -> None:
    from importlib import resources

    old_text = (resources.files("ledgerstream.schemas") / "history" / "Alert.v1.avsc").read_text()
    assert {f["name"] for f in json.loads(old_text)["fields"]}.isdisjoint({"key_id", "signature"})
    reg = codec.SchemaRegistry.from_package()
    old = reg.add_writer_schema(old_text, named_like="Alert")
    assert old.fingerprint != reg.schema("Alert").fingerprint
    name, rec = codec.decode(codec.encode_with(old, ALERT), expect="Alert")  # the shipped registry knows v1
    assert name == "Alert" and rec == dict(ALERT, key_id=None, signature=None)
    assert verdict(rec) == ("unsigned", "no_signature")


def test_unknown_key_and_another_verifiers_key_are_forged() -> None:
    assert verdict(sign_alert(ALERT, OUTSIDER)) == ("forged", "unknown_key")
    # verifier v2's genuine key claiming to be v1
    assert verdict(sign_alert(ALERT, V2)) == ("forged", "wrong_verifier")
    # nothing trusted: nothing verifies
    assert verdict(sign_alert(ALERT, V1), {}) == ("forged", "unknown_key")


def test_values_jcs_cannot_encode_are_forged_not_a_crash() -> None:
    signed = sign_alert(ALERT, V1)
    assert verdict({**signed, "seq_from": 2**60}) == ("forged", "malformed")
    with pytest.raises(ValueError):
        sign_alert({**ALERT, "time": 2**60}, V1)


def test_both_backends_verify_each_others_alert_signatures() -> None:
    backends = mldsa.available_backends()
    for signer in backends:
        for checker in backends:
            key = mldsa.PrivateKey.from_seed(bytes([1]) * 32, signer)
            pub = mldsa.PublicKey.from_bytes(key.public_key().raw, checker)
            assert verdict(sign_alert(ALERT, key), {pub.key_id: VerifierKey("v1", pub)})[0] == "verified", \
                (signer, checker)


# --- keys and trust --------------------------------------------------------------------------

def _write_pub(path: Path, key: mldsa.PrivateKey) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mldsa.public_key_pem(key.public_key()))
    return path


def test_trust_comes_from_options_then_the_environment_then_the_dev_stack(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _write_pub(verifier_public_key_path(home, "v1"), V1)
    _write_pub(verifier_public_key_path(home, "v2"), V2)
    default = trusted_verifier_keys(home, environ={})
    assert {k.verifier_id for k in default.values()} == {"v1", "v2"}
    assert default[V1.public_key().key_id].verifier_id == "v1"

    other = _write_pub(tmp_path / "elsewhere" / "outsider.pem", OUTSIDER)
    env = {ENV_VERIFIER_KEYS: os.pathsep.join([f"v7={other}", str(verifier_public_key_path(home, "v1"))])}
    from_env = trusted_verifier_keys(home, environ=env)
    assert {(k.verifier_id, kid) for kid, k in from_env.items()} == {
        ("v7", OUTSIDER.public_key().key_id), ("v1", V1.public_key().key_id)}

    explicit = trusted_verifier_keys(home, [verifier_public_key_path(home, "v2")], environ=env)
    assert list(explicit) == [V2.public_key().key_id]  # options replace the environment and the default
    assert trusted_verifier_keys(home, environ={ENV_VERIFIER_KEYS: ""}) == default
    assert trusted_verifier_keys(tmp_path / "empty-home", environ={}) == {}
    # the dev stack's signer key is trusted as verifier "signer" (its snapshot_rejected alerts)
    _write_pub(home / "keys" / "signer.pub.pem", OUTSIDER)
    with_signer = trusted_verifier_keys(home, environ={})
    assert with_signer[OUTSIDER.public_key().key_id].verifier_id == "signer" and len(with_signer) == 3


def test_bad_trust_configuration_is_refused(tmp_path: Path) -> None:
    plain = _write_pub(tmp_path / "key.pem", V1)
    with pytest.raises(ConfigError, match="which verifier"):
        trusted_verifier_keys(tmp_path, [plain], environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        trusted_verifier_keys(tmp_path, [f"v1={tmp_path / 'missing.pem'}"], environ={})
    garbage = tmp_path / "verifier-v3.pub.pem"
    garbage.write_text("not a key")
    with pytest.raises(ConfigError, match="verifier-v3.pub.pem"):
        trusted_verifier_keys(tmp_path, [garbage], environ={})
    with pytest.raises(ConfigError, match="one verifier"):
        trusted_verifier_keys(tmp_path, [f"v1={plain}", f"v2={plain}"], environ={})


def test_a_verifier_without_its_key_gets_a_clear_error(tmp_path: Path) -> None:
    path = verifier_key_path(tmp_path, "v1")
    assert path == tmp_path / "keys" / "verifier-v1.pem"
    with pytest.raises(ConfigError, match=r"verifier v1 signs every alert.*ledgerstream keys generate"):
        load_alert_key(path, "v1")
    path.parent.mkdir()
    path.write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="unusable alert signing key"):
        load_alert_key(path, "v1")
    path.unlink()
    mldsa.save_private_key(V1, path)
    assert load_alert_key(path, "v1").public_key() == V1.public_key()
