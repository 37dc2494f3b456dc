"""core/verify/trust.py on the cases its mutation run showed untested (docs/mutation.md): what
a verifier trusts, found from HOME and the command line as the docstrings and docs say.
Expected values come from the documents, not from the code: the defaults of docs/alerts.md
(link grace 300 s and 10,000 entries, clock skew 300 s), HOME's layout (keys/signer.pub.pem,
keys/trusted/*.pem, keys/signer.vkey, keys/trusted/*.vkey, witnesses.json, tsa/ca.pem,
policy.yaml|yml|json: docs/witnesses.md, docs/alerts.md, docs/approvals.md), the Avro string
encoding (zigzag varint length, then UTF-8; Avro 1.11 specification) written out here, and
witnessed_size as "the k-th largest cosigned size" computed here by sorting by hand."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from ledgerstream.core import mldsa, note
from ledgerstream.core.errors import ConfigError, VerificationError
from ledgerstream.core.verify import trust
from ledgerstream.core.verify.trust import CheckerConfig, NoteTrust, TrustedKeys, Witness

pytestmark = pytest.mark.unit

K1 = mldsa.PrivateKey.from_seed(bytes(range(32))).public_key()
K2 = mldsa.PrivateKey.from_seed(bytes(range(1, 33))).public_key()
K3 = mldsa.PrivateKey.from_seed(bytes(range(2, 34))).public_key()


def _ed(seed: int) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


W1 = note.Verifier("w1.example/witness", note.COSIGNATURE_V1, _ed(1))
W2 = note.Verifier("w2.example/witness", note.COSIGNATURE_V1, _ed(2))
LOG = note.Verifier("log.example/log", note.ED25519, _ed(3))
LOG2 = note.Verifier("log.example/log2", note.ED25519, _ed(4))


def _pem(path: Path, key: mldsa.PublicKey) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mldsa.public_key_pem(key))
    return path


def _witnesses(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _ca_pem() -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test TSA CA")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, None))
    return cert.public_bytes(serialization.Encoding.PEM)


# --- CheckerConfig ---------------------------------------------------------------------------

def test_the_documented_defaults() -> None:
    c = CheckerConfig(trusted_keys={})
    assert c.tsa_ca is None and c.approvers is None and c.origin is None
    assert c.link_grace_seconds == 300.0 and c.link_grace_entries == 10_000  # docs/alerts.md link_dangling
    assert c.clock_skew_seconds == 300.0  # docs/alerts.md: "the allowed clock skew (default 300 s)"
    assert c.note_keys == () and c.witnesses == () and c.witness_quorum == 0


def test_a_link_grace_needs_one_bound_at_least() -> None:
    with pytest.raises(ValueError, match="link_grace"):
        CheckerConfig(trusted_keys={}, link_grace_seconds=None, link_grace_entries=None)
    assert CheckerConfig(trusted_keys={}, link_grace_seconds=None).link_grace_entries == 10_000
    assert CheckerConfig(trusted_keys={}, link_grace_entries=None).link_grace_seconds == 300.0


def test_a_config_is_an_immutable_value() -> None:
    c = CheckerConfig(trusted_keys={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.origin = "other"  # type: ignore[misc]


def test_from_keys_trusts_each_key_under_its_key_id_and_passes_the_options() -> None:
    c = CheckerConfig.from_keys([K1, K2], origin="o", witness_quorum=1)
    assert dict(c.trusted_keys) == {K1.key_id: K1, K2.key_id: K2}
    assert c.origin == "o" and c.witness_quorum == 1


def _avro_string(text: str) -> bytes:
    """Avro 1.11: a string is a long (zigzag, then base-128 varint, low groups first) byte
    count followed by the UTF-8 bytes."""
    data = text.encode()
    n = len(data) << 1  # zigzag of a non-negative long
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            break
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out) + data


@pytest.mark.parametrize("key_ids", [["a"], ["k" * 63, "k" * 64, "é" * 40], ["x" * 300]])
def test_encoded_key_ids_are_the_avro_strings_and_the_keys_in_the_same_order(key_ids: list[str]) -> None:
    keys = [K1, K2, K3][:len(key_ids)]
    c = CheckerConfig(trusted_keys=dict(zip(key_ids, keys)))
    encoded, ordered = c.encoded_key_ids
    assert encoded == tuple(_avro_string(k) for k in key_ids)
    assert ordered == tuple(keys)


def _kth_largest(sizes: list[int], k: int) -> int:
    """A second implementation: drop the largest k - 1 times, take the largest."""
    left = list(sizes)
    if not 0 < k <= len(left):
        return 0
    for _ in range(k - 1):
        left.remove(max(left))
    return max(left)


@pytest.mark.parametrize("quorum", [0, 1, 2, 3, 4, -1])
def test_witnessed_size_is_the_largest_size_a_quorum_cosigned(quorum: int) -> None:
    latest = {"a": 3, "b": 9, "c": 5}
    want = _kth_largest(list(latest.values()), quorum)
    assert CheckerConfig(trusted_keys={}, witness_quorum=quorum).witnessed_size(latest) == want
    assert want == {0: 0, 1: 9, 2: 5, 3: 3, 4: 0, -1: 0}[quorum]


def test_witnessed_size_with_more_witnesses_than_cpython_caches_ints_for() -> None:
    # 300 witnesses, a quorum of all of them read from a file (a fresh int object)
    latest = {f"w{i}": 1000 + i for i in range(300)}
    quorum = int("300")
    assert CheckerConfig(trusted_keys={}, witness_quorum=quorum).witnessed_size(latest) == 1000
    assert CheckerConfig(trusted_keys={}, witness_quorum=int("301")).witnessed_size(latest) == 0
    assert CheckerConfig(trusted_keys={}, witness_quorum=int("299")).witnessed_size(latest) == 1001


# --- TrustedKeys ----------------------------------------------------------------------------

def test_a_pem_is_trusted_under_its_key_id_and_the_first_source_is_kept(tmp_path: Path) -> None:
    keys = TrustedKeys()
    a = _pem(tmp_path / "a.pem", K1)
    b = _pem(tmp_path / "b.pem", K1)
    keys.add_pem(a)
    keys.add_pem(b)
    assert keys.by_id == {K1.key_id: K1} and keys.sources == {K1.key_id: str(a)}
    assert keys.get(K1.key_id) == K1


def test_an_unreadable_pem_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read trusted key"):
        TrustedKeys().add_pem(tmp_path / "missing.pem")


def test_an_unknown_key_id_is_an_unknown_key_finding() -> None:
    keys = TrustedKeys()
    keys.by_id = {K2.key_id: K2, K1.key_id: K1}
    with pytest.raises(VerificationError) as info:
        keys.get(K3.key_id)
    assert info.value.kind == "unknown_key"
    assert info.value.evidence["key_id"] == K3.key_id
    assert info.value.evidence["trusted"] == sorted([K1.key_id, K2.key_id])


def test_home_trusts_signer_pub_pem_then_trusted_pems_in_name_order(tmp_path: Path) -> None:
    assert TrustedKeys.home_paths(tmp_path) == []
    z = _pem(tmp_path / "keys" / "trusted" / "z.pem", K3)
    a = _pem(tmp_path / "keys" / "trusted" / "a.pem", K2)
    (tmp_path / "keys" / "trusted" / "notes.txt").write_text("not a key")
    assert TrustedKeys.home_paths(tmp_path) == [a, z]
    s = _pem(tmp_path / "keys" / "signer.pub.pem", K1)
    assert TrustedKeys.home_paths(tmp_path) == [s, a, z]


def test_load_takes_home_and_the_extra_pems(tmp_path: Path) -> None:
    s = _pem(tmp_path / "keys" / "signer.pub.pem", K1)
    extra = _pem(tmp_path / "elsewhere" / "x.pem", K2)
    keys = TrustedKeys.load(tmp_path, [str(extra)])
    assert keys.by_id == {K1.key_id: K1, K2.key_id: K2}
    assert keys.sources == {K1.key_id: str(s), K2.key_id: str(extra)}
    only_extra = TrustedKeys.load(tmp_path / "empty-home", [extra])
    assert only_extra.by_id == {K2.key_id: K2}


def test_no_trusted_key_at_all_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no trusted signer keys"):
        TrustedKeys.load(tmp_path)


# --- witnesses, note keys --------------------------------------------------------------------

def test_a_witness_is_named_by_its_key_and_is_a_value() -> None:
    w = Witness(W1, "http://127.0.0.1:1")
    assert w.name == "w1.example/witness" and Witness(W1).url is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.url = "x"  # type: ignore[misc]


def test_no_witness_file_means_no_witnesses(tmp_path: Path) -> None:
    assert trust.load_witnesses(tmp_path) == ((), 0)
    assert trust.load_witnesses(tmp_path, None) == ((), 0)


def test_a_named_witness_file_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        trust.load_witnesses(tmp_path, tmp_path / "nope.json")


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe"])
def test_a_witness_file_that_is_not_json_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "witnesses.json").write_bytes(content)
    with pytest.raises(ConfigError, match="cannot read witness file"):
        trust.load_witnesses(tmp_path)


def test_an_unreadable_witness_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "witnesses.json").mkdir()  # reading a directory: IsADirectoryError, an OSError
    with pytest.raises(ConfigError, match="cannot read witness file"):
        trust.load_witnesses(tmp_path)


def test_the_home_witness_file_in_the_documented_format(tmp_path: Path) -> None:
    _witnesses(tmp_path / "witnesses.json", {"quorum": 1, "witnesses": [
        {"vkey": W1.vkey, "url": "http://127.0.0.1:41711"}, {"vkey": W2.vkey}]})
    witnesses, quorum = trust.load_witnesses(tmp_path)
    assert witnesses == (Witness(W1, "http://127.0.0.1:41711"), Witness(W2, None)) and quorum == 1


def test_an_explicit_witness_file_wins_over_home(tmp_path: Path) -> None:
    _witnesses(tmp_path / "witnesses.json", {"witnesses": [{"vkey": W1.vkey}]})
    other = _witnesses(tmp_path / "other.json", {"witnesses": [{"vkey": W2.vkey}]})
    assert trust.load_witnesses(tmp_path, other) == ((Witness(W2),), 1)


def test_the_quorum_defaults_to_all_witnesses(tmp_path: Path) -> None:
    _witnesses(tmp_path / "witnesses.json", {"witnesses": [{"vkey": W1.vkey}, {"vkey": W2.vkey}]})
    assert trust.load_witnesses(tmp_path)[1] == 2
    _witnesses(tmp_path / "witnesses.json", {})
    assert trust.load_witnesses(tmp_path) == ((), 0)


@pytest.mark.parametrize("quorum", [0, 1, 2])
def test_a_quorum_from_0_to_the_number_of_witnesses_is_accepted(tmp_path: Path, quorum: int) -> None:
    _witnesses(tmp_path / "witnesses.json", {"quorum": quorum, "witnesses": [{"vkey": W1.vkey}, {"vkey": W2.vkey}]})
    assert trust.load_witnesses(tmp_path)[1] == quorum


@pytest.mark.parametrize("quorum", [-1, 3, 10])
def test_a_quorum_outside_0_to_the_number_of_witnesses_is_a_config_error(tmp_path: Path, quorum: int) -> None:
    _witnesses(tmp_path / "witnesses.json", {"quorum": quorum, "witnesses": [{"vkey": W1.vkey}, {"vkey": W2.vkey}]})
    with pytest.raises(ConfigError, match="is not between 0 and 2"):
        trust.load_witnesses(tmp_path)


@pytest.mark.parametrize("doc", [
    {"witnesses": [{"url": "http://x"}]},             # no vkey: KeyError
    {"witnesses": ["w1"]},                            # not an object: TypeError (str indices)
    {"witnesses": [{"vkey": "not a vkey"}]},          # ValueError
    {"witnesses": [{"vkey": 5}]},                     # AttributeError (int has no strip)
    {"quorum": "two", "witnesses": []},               # ValueError
    {"quorum": None, "witnesses": []},                # TypeError
    ["not", "an", "object"],                          # AttributeError (list has no get)
])
def test_a_malformed_witness_file_is_a_config_error(tmp_path: Path, doc: object) -> None:
    _witnesses(tmp_path / "witnesses.json", doc)
    with pytest.raises(ConfigError, match="witness file"):
        trust.load_witnesses(tmp_path)


def test_two_witnesses_of_one_name_are_a_config_error(tmp_path: Path) -> None:
    same_name = note.Verifier(W1.name, note.COSIGNATURE_V1, _ed(9))
    _witnesses(tmp_path / "witnesses.json", {"witnesses": [{"vkey": W1.vkey}, {"vkey": same_name.vkey}]})
    with pytest.raises(ConfigError, match="share a name"):
        trust.load_witnesses(tmp_path)


def test_note_keys_are_signer_vkey_then_trusted_vkeys_in_name_order(tmp_path: Path) -> None:
    assert trust.load_note_keys(tmp_path) == ()
    (tmp_path / "keys" / "trusted").mkdir(parents=True)
    (tmp_path / "keys" / "trusted" / "b.vkey").write_text(W2.vkey + "\n")
    (tmp_path / "keys" / "trusted" / "a.vkey").write_text(W1.vkey + "\n")
    (tmp_path / "keys" / "trusted" / "c.pem").write_text(LOG2.vkey + "\n")  # not a .vkey
    assert trust.load_note_keys(tmp_path) == (W1, W2)
    (tmp_path / "keys" / "signer.vkey").write_text(f"{LOG.vkey}\n{LOG2.vkey}\n")
    assert trust.load_note_keys(tmp_path) == (LOG, LOG2, W1, W2)


def test_an_unreadable_vkey_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "keys" / "signer.vkey").mkdir(parents=True)
    with pytest.raises(ConfigError, match="cannot read"):
        trust.load_note_keys(tmp_path)


def test_note_trust_is_home_s_note_keys_witnesses_and_quorum(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "signer.vkey").write_text(LOG.vkey + "\n")
    _witnesses(tmp_path / "witnesses.json", {"quorum": 1, "witnesses": [{"vkey": W1.vkey}, {"vkey": W2.vkey}]})
    t = NoteTrust.load(tmp_path)
    assert t == NoteTrust((LOG,), (W1, W2), 1)
    assert t.options() == {"note_keys": (LOG,), "witnesses": (W1, W2), "witness_quorum": 1}
    other = _witnesses(tmp_path / "other.json", {"witnesses": [{"vkey": W2.vkey}]})
    assert NoteTrust.load(tmp_path, other) == NoteTrust((LOG,), (W2,), 1)
    assert NoteTrust() == NoteTrust((), (), 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.quorum = 2  # type: ignore[misc]


# --- TSA CA, policy ---------------------------------------------------------------------------

def test_the_tsa_ca_is_the_named_file_else_home_tsa_ca_pem_else_none(tmp_path: Path) -> None:
    assert trust.tsa_ca(tmp_path, None) is None
    (tmp_path / "tsa").mkdir()
    (tmp_path / "tsa" / "ca.pem").write_bytes(b"home ca")
    (tmp_path / "mine.pem").write_bytes(b"my ca")
    assert trust.tsa_ca(tmp_path, None) == b"home ca"
    assert trust.tsa_ca(tmp_path, tmp_path / "mine.pem") == b"my ca"


def test_a_named_tsa_ca_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        trust.tsa_ca(tmp_path, tmp_path / "nope.pem")


def test_an_unreadable_tsa_ca_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "tsa" / "ca.pem").mkdir(parents=True)
    with pytest.raises(ConfigError, match="cannot read TSA CA"):
        trust.tsa_ca(tmp_path, None)


def test_the_policy_is_the_named_file_else_home_policy_yaml_yml_json_in_that_order(tmp_path: Path) -> None:
    assert trust.find_policy(tmp_path) is None
    for name in ("policy.json", "policy.yml", "policy.yaml"):
        (tmp_path / name).write_text("{}")
        assert trust.find_policy(tmp_path) == tmp_path / name
    mine = tmp_path / "mine.json"
    mine.write_text("{}")
    assert trust.find_policy(tmp_path, mine) == mine
    with pytest.raises(ConfigError, match="does not exist"):
        trust.find_policy(tmp_path, tmp_path / "nope.json")


def test_the_approvers_are_the_policy_s_approvals_section(tmp_path: Path) -> None:
    assert trust.load_approvers(tmp_path) is None
    _pem(tmp_path / "alice.pem", K1)
    _pem(tmp_path / "bob.pem", K2)
    (tmp_path / "policy.json").write_text(json.dumps({
        "default": "allow", "rules": [],
        "approvals": {"m": 1, "approvers": {"alice": "alice.pem", "bob": "bob.pem"}}}))
    approvers = trust.load_approvers(tmp_path)
    assert dict(approvers.approvers) == {"alice": K1, "bob": K2} and approvers.m == 1


# --- checker_config ---------------------------------------------------------------------------

def test_checker_config_gathers_home_s_trust(tmp_path: Path) -> None:
    _pem(tmp_path / "keys" / "signer.pub.pem", K1)
    extra = _pem(tmp_path / "x.pem", K2)
    (tmp_path / "keys" / "signer.vkey").write_text(LOG.vkey + "\n")
    _witnesses(tmp_path / "witnesses.json", {"quorum": 1, "witnesses": [{"vkey": W1.vkey}]})
    ca = _ca_pem()
    (tmp_path / "tsa").mkdir()
    (tmp_path / "tsa" / "ca.pem").write_bytes(ca)
    c = trust.checker_config(tmp_path, trusted_keys=[extra], origin="o", link_grace_entries=7)
    assert dict(c.trusted_keys) == {K1.key_id: K1, K2.key_id: K2}
    assert c.tsa_ca == ca and c.approvers is None
    assert (c.note_keys, c.witnesses, c.witness_quorum) == ((LOG,), (W1,), 1)
    assert c.origin == "o" and c.link_grace_entries == 7


def test_checker_config_without_a_tsa_ca_or_witnesses(tmp_path: Path) -> None:
    _pem(tmp_path / "keys" / "signer.pub.pem", K1)
    c = trust.checker_config(tmp_path)
    assert c.tsa_ca is None and c.note_keys == () and c.witnesses == () and c.witness_quorum == 0


def test_a_tsa_ca_that_is_not_a_pem_bundle_is_a_config_error_at_start(tmp_path: Path) -> None:
    _pem(tmp_path / "keys" / "signer.pub.pem", K1)
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="not a PEM certificate bundle"):
        trust.checker_config(tmp_path, tsa_ca_path=bad)


def test_checker_config_takes_every_path_by_keyword_only(tmp_path: Path) -> None:
    # its signature: home, then keyword-only options; trusted_keys, tsa_ca_path, policy and
    # witnesses_path are all paths, so a positional one could be taken for another
    extra = _pem(tmp_path / "x.pem", K1)
    with pytest.raises(TypeError):
        trust.checker_config(tmp_path, [extra])  # type: ignore[misc]
    assert dict(trust.checker_config(tmp_path, trusted_keys=[extra]).trusted_keys) == {K1.key_id: K1}


def test_three_hundred_witnesses_of_distinct_names_are_accepted(tmp_path: Path) -> None:
    # more witnesses than CPython caches ints for: the counts compared are two fresh ints
    many = [note.Verifier(f"w{i}.example/witness", note.COSIGNATURE_V1, _ed(i % 256) if i < 256 else
                          Ed25519PrivateKey.from_private_bytes(i.to_bytes(2, "big") * 16).public_key()
                          .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
            for i in range(300)]
    _witnesses(tmp_path / "witnesses.json", {"quorum": 200, "witnesses": [{"vkey": w.vkey} for w in many]})
    witnesses, quorum = trust.load_witnesses(tmp_path)
    assert [w.verifier for w in witnesses] == many and quorum == 200
