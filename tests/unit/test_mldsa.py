"""ledgerstream.core.mldsa: every available backend, key files, and the backend probe."""
from __future__ import annotations

import base64
import ctypes.util
import hashlib
import json
import logging
import os
import stat
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey

from ledgerstream.core import mldsa
from ledgerstream.core.errors import ConfigError, InvalidSignature, UnsupportedAlgorithm
from ledgerstream.core.mldsa import PrivateKey, PublicKey

pytestmark = pytest.mark.unit

SEED = bytes(range(32))
MESSAGE = b"ledgerstream: agent 7 called tool 'search' with 3 arguments"


@pytest.fixture(autouse=True)
def _no_backend_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mldsa.BACKEND_ENV, raising=False)


@pytest.fixture(params=mldsa.available_backends())
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def _require_liboqs() -> None:
    if "liboqs" not in mldsa.available_backends():
        reason = f"liboqs backend absent: {mldsa._probe_liboqs().reason}"
        if os.environ.get("CI") == "true":  # a failed liboqs build fails CI, it is not skipped
            pytest.fail(reason)
        print(reason)
        pytest.skip(reason)


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def test_pyca_is_always_available() -> None:
    assert "pyca" in mldsa.available_backends()
    assert mldsa.default_backend() == mldsa.available_backends()[0]


def test_sign_and_verify(backend: str) -> None:
    key = PrivateKey.generate(backend)
    assert key.backend == backend
    signature = key.sign(MESSAGE)
    assert len(signature) == mldsa.SIGNATURE_SIZE == 3309
    key.public_key().verify(signature, MESSAGE)
    PublicKey.from_bytes(key.public_key().raw, backend).verify(signature, MESSAGE)
    key.public_key().verify(key.sign(b""), b"")


def test_signing_is_hedged(backend: str) -> None:
    key = PrivateKey.from_seed(SEED, backend)
    assert key.sign(MESSAGE) != key.sign(MESSAGE)


BAD_CASES = {
    "wrong key": lambda sig, msg, other: (other, sig, msg),
    "tampered message": lambda sig, msg, other: (None, sig, msg + b"."),
    "tampered first byte": lambda sig, msg, other: (None, _flip(sig, 0), msg),
    "tampered middle byte": lambda sig, msg, other: (None, _flip(sig, 1700), msg),
    "tampered last byte": lambda sig, msg, other: (None, _flip(sig, -1), msg),
    "truncated signature": lambda sig, msg, other: (None, sig[:-1], msg),
    "extended signature": lambda sig, msg, other: (None, sig + b"\x00", msg),
    "empty signature": lambda sig, msg, other: (None, b"", msg),
    "random signature": lambda sig, msg, other: (None, os.urandom(len(sig)), msg),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_signatures_raise_invalid_signature(backend: str, case: str) -> None:
    key = PrivateKey.generate(backend)
    other = PrivateKey.generate(backend).public_key()
    public, signature, message = BAD_CASES[case](key.sign(MESSAGE), MESSAGE, other)
    public = public or key.public_key()
    with pytest.raises(InvalidSignature) as info:
        public.verify(signature, message)
    assert info.value.kind == "bad_signature"
    assert info.value.evidence["key_id"] == public.key_id
    assert public.key_id[:16] in str(info.value) or "bytes" in str(info.value)


def test_key_id_is_sha256_of_raw_public_key(backend: str) -> None:
    public = PrivateKey.from_seed(SEED, backend).public_key()
    assert len(public.raw) == mldsa.PUBLIC_KEY_SIZE == 1952
    assert public.key_id == hashlib.sha256(public.raw).hexdigest()
    assert public.key_id == public.key_id.lower() and len(public.key_id) == 64


def test_seed_round_trip(backend: str) -> None:
    key = PrivateKey.from_seed(SEED, backend)
    assert key.seed == SEED
    expected = MLDSA65PrivateKey.from_seed_bytes(SEED).public_key().public_bytes_raw()
    assert key.public_key().raw == expected
    again = PrivateKey.from_seed(key.seed, backend)
    again.public_key().verify(key.sign(MESSAGE), MESSAGE)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_seed_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        PrivateKey.from_seed(bytes(size))


def test_public_key_must_be_1952_bytes() -> None:
    with pytest.raises(ConfigError, match="1952"):
        PublicKey.from_bytes(bytes(1951))


def test_private_key_file_round_trip(tmp_path, backend: str) -> None:
    key = PrivateKey.generate(backend)
    path = tmp_path / "signer.pem"
    mldsa.save_private_key(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pyca = MLDSA65PrivateKey.from_seed_bytes(key.seed)
    assert path.read_bytes() == pyca.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for source in (path, str(path), path.read_bytes()):
        loaded = mldsa.load_private_key(source, backend=backend)
        assert loaded.seed == key.seed and loaded.backend == backend
        assert loaded.public_key() == key.public_key()


def test_save_refuses_to_overwrite_unless_asked(tmp_path) -> None:
    path = tmp_path / "signer.pem"
    first, second = PrivateKey.generate(), PrivateKey.generate()
    mldsa.save_private_key(first, path)
    with pytest.raises(ConfigError, match="already exists"):
        mldsa.save_private_key(second, path)
    assert mldsa.load_private_key(path).seed == first.seed
    path.chmod(0o644)
    mldsa.save_private_key(second, path, overwrite=True)
    assert mldsa.load_private_key(path).seed == second.seed
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signer.pem"]


def test_public_key_pem_and_raw_round_trip(backend: str) -> None:
    public = PrivateKey.from_seed(SEED).public_key()
    pem = mldsa.public_key_pem(public)
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    pyca = MLDSA65PrivateKey.from_seed_bytes(SEED).public_key()
    assert pem == pyca.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for source in (pem, public.raw):
        loaded = mldsa.load_public_key(source, backend=backend)
        assert loaded == public and loaded.backend == backend


def _ed25519_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "not a PEM"),
        (b"garbage\n", "not a PEM"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a PEM"),
        (_ed25519_pem(), "Ed25519"),
    ],
    ids=["empty", "garbage", "bad base64 body", "ed25519 key"],
)
def test_load_private_key_rejects_bad_files(tmp_path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=match) as info:
        mldsa.load_private_key(path)
    assert str(path) in str(info.value)


def _pkcs8_pem(private_key_field: bytes) -> bytes:
    """A PKCS#8 id-ml-dsa-65 key whose privateKey OCTET STRING holds ``private_key_field``."""

    def tlv(tag: int, value: bytes) -> bytes:
        n = len(value)
        size = bytes([n]) if n < 128 else bytes([0x82]) + n.to_bytes(2, "big")
        return bytes([tag]) + size + value

    algorithm = bytes.fromhex("300b0609608648016503040312")
    der = tlv(0x30, bytes.fromhex("020100") + algorithm + tlv(0x04, private_key_field))
    return b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END PRIVATE KEY-----\n"


def test_load_private_key_reads_only_the_seed_form() -> None:
    seed_form = _pkcs8_pem(bytes([0x80, 32]) + SEED)
    assert mldsa.load_private_key(seed_form).seed == SEED
    expanded = bytes([0x04, 0x82, 0x0F, 0xC0]) + bytes(4032)
    both = bytes([0x30, 0x82, 0x0F, 0xE6, 0x04, 32]) + SEED + expanded
    for other_form in (expanded, both):
        with pytest.raises(ConfigError, match="not a PEM PKCS#8"):
            mldsa.load_private_key(_pkcs8_pem(other_form))


def test_load_private_key_rejects_encrypted_pem() -> None:
    pem = MLDSA65PrivateKey.from_seed_bytes(SEED).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(ConfigError, match="encrypted"):
        mldsa.load_private_key(pem)


def test_load_private_key_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read private key"):
        mldsa.load_private_key(tmp_path / "absent.pem")


def test_load_public_key_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="neither a PEM"):
        mldsa.load_public_key(b"short")
    ed_public = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ConfigError, match="Ed25519"):
        mldsa.load_public_key(ed_public)


def test_env_selects_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mldsa.BACKEND_ENV, "pyca")
    assert mldsa.default_backend() == "pyca"
    assert PrivateKey.generate().backend == "pyca"
    monkeypatch.setenv(mldsa.BACKEND_ENV, "rot13")
    with pytest.raises(UnsupportedAlgorithm, match="unknown ML-DSA backend 'rot13'"):
        mldsa.default_backend()


def test_absent_liboqs_raises_unsupported_algorithm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mldsa, "_probe_liboqs", lambda: mldsa._Probe(None, "no library (test)"))
    assert mldsa.available_backends() == ["pyca"]
    assert mldsa.default_backend() == "pyca"
    with pytest.raises(UnsupportedAlgorithm, match="'liboqs' is not available: no library"):
        PrivateKey.generate("liboqs")
    with pytest.raises(UnsupportedAlgorithm, match="liboqs"):
        PublicKey.from_bytes(PrivateKey.from_seed(SEED).public_key().raw, "liboqs")
    monkeypatch.setenv(mldsa.BACKEND_ENV, "liboqs")
    with pytest.raises(UnsupportedAlgorithm, match="install_liboqs"):
        mldsa.default_backend()


def test_probe_never_raises_or_imports_oqs(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    had_oqs = "oqs" in sys.modules
    monkeypatch.setenv("OQS_INSTALL_PATH", str(tmp_path))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    probe = mldsa._probe_liboqs.__wrapped__()  # uncached: the real probe, run again
    assert probe.backend is None and "no liboqs shared library" in probe.reason
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "liboqs.so").write_bytes(b"not an ELF file")
    probe = mldsa._probe_liboqs.__wrapped__()
    assert probe.backend is None and "liboqs.so" in probe.reason
    assert ("oqs" in sys.modules) == had_oqs


def _gate_file(tmp_path, flip_tc_id: int | None) -> str:
    """The shipped gate vectors, with one expected verdict inverted if asked."""
    data = json.loads(mldsa.GATE_VECTORS.read_text())
    for case in data["tests"]:
        if case["tcId"] == flip_tc_id:
            case["result"] = "invalid" if case["result"] == "valid" else "valid"
    path = tmp_path / "gate.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_gate_vectors_are_the_vendored_wycheproof_cases() -> None:
    """Each gate case is byte for byte a case of the complete vendored file."""
    full = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "wycheproof"
                       / "mldsa_65_verify_test.json").read_text())
    by_id = {t["tcId"]: (g["publicKey"], t) for g in full["testGroups"] for t in g["tests"]}
    gate = json.loads(mldsa.GATE_VECTORS.read_text())["tests"]
    assert {"InfinityNormViolation", "ZeroPublicKey", "ValidSignature"} <= {f for c in gate for f in c["flags"]}
    for case in gate:
        public, test = by_id[case["tcId"]]
        assert case["publicKey"] == public
        assert {k: case[k] for k in test} == test


def test_backends_pass_the_gate_on_load() -> None:
    assert "gate vectors pass" in mldsa._probe_pyca().reason
    for name in mldsa.available_backends():
        assert mldsa.conformance_failures(mldsa._backend(name), json.loads(mldsa.GATE_VECTORS.read_text())["tests"]) == []


@pytest.mark.parametrize("name", ["pyca", "liboqs"])
def test_a_backend_that_disagrees_with_a_vector_is_refused(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture, name: str) -> None:
    """Invert the expected verdict of the norm-violation vector: the (correct) backend now
    'disagrees', so the probe refuses it with a message naming the vector, logged once."""
    if name == "liboqs":
        _require_liboqs()
    probe = {"pyca": mldsa._probe_pyca, "liboqs": mldsa._probe_liboqs}[name]
    monkeypatch.setattr(mldsa, "GATE_VECTORS", Path(_gate_file(tmp_path, 84)))
    with caplog.at_level(logging.WARNING, logger="ledgerstream.core.mldsa"):
        refused = probe.__wrapped__()
    assert refused.backend is None
    assert f"ML-DSA backend '{name}' refused" in refused.reason and "tcId 84" in refused.reason
    assert [r.getMessage() for r in caplog.records] == [refused.reason]
    monkeypatch.setattr(mldsa, f"_probe_{name}", lambda: refused)
    assert name not in mldsa.available_backends()
    if name == "liboqs":
        assert mldsa.default_backend() == "pyca"
        with pytest.raises(UnsupportedAlgorithm, match="refused"):
            PrivateKey.generate("liboqs")


def test_liboqs_probe_reports_version() -> None:
    _require_liboqs()
    reason = mldsa._probe_liboqs().reason
    major, minor = (int(p) for p in reason.split()[1].split(".")[:2])
    assert (major, minor) >= (0, 12)


def test_cross_verification_between_backends() -> None:
    _require_liboqs()
    keys = {name: PrivateKey.from_seed(SEED, name) for name in ("pyca", "liboqs")}
    assert keys["pyca"].public_key().raw == keys["liboqs"].public_key().raw
    for signer in keys.values():
        signature = signer.sign(MESSAGE)
        for verifier in ("pyca", "liboqs"):
            public = PublicKey.from_bytes(signer.public_key().raw, verifier)
            public.verify(signature, MESSAGE)
            with pytest.raises(InvalidSignature):
                public.verify(_flip(signature, 100), MESSAGE)


def test_liboqs_keygen_from_seed_is_thread_safe() -> None:
    _require_liboqs()
    seeds = [hashlib.sha256(bytes([i])).digest() for i in range(24)]
    results: dict[bytes, bytes] = {}

    def work(chunk: list[bytes]) -> None:
        for seed in chunk:
            key = PrivateKey.from_seed(seed, "liboqs")
            key.sign(MESSAGE)  # signing in parallel draws OS randomness through the same liboqs
            results[seed] = key.public_key().raw

    threads = [threading.Thread(target=work, args=(seeds[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed in seeds:
        assert results[seed] == MLDSA65PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw()


def test_measure_sign_rate(backend: str) -> None:
    assert mldsa.measure_sign_rate(backend, seconds=0.05) > 0


def test_measure_verify_rate_times_only_the_checks(backend: str) -> None:
    """The rate is of verify calls alone: timing the same number of checks here gives the
    same rate within noise (the bench once divided by a window that also held 1 s of
    signing, and reported half the real rate)."""
    import time as _time

    rate = mldsa.measure_verify_rate(backend, seconds=0.3)
    key = mldsa.PrivateKey.generate(backend)
    signature, pub = key.sign(bytes(256)), key.public_key()
    n = max(5, int(rate * 0.3))
    start = _time.perf_counter()
    for _ in range(n):
        pub.verify(signature, bytes(256))
    direct = n / (_time.perf_counter() - start)
    assert 0.5 * direct < rate < 2 * direct


# --- sign_many (liboqs: one GIL-free call per chunk through the sign_many shim) -------------

def test_sign_many_signs_each_message(backend: str) -> None:
    key = PrivateKey.generate(backend)
    messages = [MESSAGE + bytes([i]) * i for i in range(7)] + [b""]
    signatures = key.sign_many(messages)
    assert len(signatures) == len(messages)
    for verifier in mldsa.available_backends():
        public = PublicKey.from_bytes(key.public_key().raw, verifier)
        for message, signature in zip(messages, signatures):
            assert len(signature) == mldsa.SIGNATURE_SIZE
            public.verify(signature, message)
        with pytest.raises(InvalidSignature):
            public.verify(signatures[0], messages[1])
    assert key.sign_many([]) == []


def _require_sign_many_shim() -> None:
    _require_liboqs()
    if not PrivateKey.generate("liboqs").sign_many_releases_gil:
        reason = f"sign_many shim absent: {mldsa._probe_liboqs().reason}"
        print(reason)
        pytest.skip(reason)


def test_liboqs_sign_many_uses_the_shim_and_verifies_with_pyca() -> None:
    _require_sign_many_shim()
    from cryptography.hazmat.primitives.asymmetric import mldsa as pyca_mldsa

    key = PrivateKey.from_seed(SEED, "liboqs")
    assert key.sign_many_releases_gil and not PrivateKey.from_seed(SEED, "pyca").sign_many_releases_gil
    assert "sign_many shim at" in mldsa._probe_liboqs().reason
    pyca = pyca_mldsa.MLDSA65PublicKey.from_public_bytes(key.public_key().raw)
    messages = [hashlib.sha256(bytes([i])).digest() * (1 + i % 3) for i in range(100)]
    signatures = key.sign_many(messages)
    for message, signature in zip(messages, signatures):
        pyca.verify(signature, message)  # raises if invalid
    assert len(set(signatures)) == len(signatures)  # hedged: fresh randomness per signature
    # the same messages through sign(): also valid (both are liboqs's OQS_SIG_sign)
    pyca.verify(key.sign(messages[0]), messages[0])


def test_sign_many_runs_beside_other_threads() -> None:
    """Chunks signed on several threads at once (the signer's thread and, say, a checkpoint
    signed inline) are all valid."""
    _require_sign_many_shim()
    key = PrivateKey.generate("liboqs")
    public = PublicKey.from_bytes(key.public_key().raw, "pyca")
    results: dict[int, list[bytes]] = {}

    def work(i: int) -> None:
        results[i] = key.sign_many([bytes([i]) * 40] * 30)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    inline = key.sign(MESSAGE)
    for t in threads:
        t.join()
    public.verify(inline, MESSAGE)
    for i, signatures in results.items():
        for signature in signatures:
            public.verify(signature, bytes([i]) * 40)


def test_without_the_shim_liboqs_signs_one_by_one(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require_liboqs()
    probe = mldsa._probe_liboqs()
    path = probe.reason.split(" at ", 1)[1].split(";", 1)[0]
    monkeypatch.setenv(mldsa.SIGN_MANY_ENV, "0")
    assert mldsa._load_sign_many(path) == (None, f"sign_many shim off (${mldsa.SIGN_MANY_ENV}=0)")
    monkeypatch.delenv(mldsa.SIGN_MANY_ENV)
    assert mldsa._load_sign_many(str(tmp_path / "liboqs.so"))[0] is None  # nothing installed beside it
    assert mldsa._load_sign_many("liboqs.so.7")[0] is None  # found on the system path: no folder to look in
    (tmp_path / mldsa.SIGN_MANY_LIBRARY).write_bytes(b"not an ELF file")
    many, note = mldsa._load_sign_many(str(tmp_path / "liboqs.so"))
    assert many is None and "unusable" in note
    # a probe without the shim gives keys that still sign_many, one signature per call
    monkeypatch.setenv(mldsa.SIGN_MANY_ENV, "0")
    fresh = mldsa._probe_liboqs.__wrapped__()
    assert fresh.backend is not None and "sign_many shim off" in fresh.reason
    monkeypatch.setattr(mldsa, "_probe_liboqs", lambda: fresh)
    key = PrivateKey.generate("liboqs")
    assert not key.sign_many_releases_gil
    public = PublicKey.from_bytes(key.public_key().raw, "pyca")
    for message, signature in zip([b"a", b"b"], key.sign_many([b"a", b"b"])):
        public.verify(signature, message)


# --- verify_many (liboqs: one GIL-free call per chunk through the same shim) ------------------

def test_verify_many_agrees_with_verify(backend: str) -> None:
    key = PrivateKey.from_seed(SEED, backend)
    messages = [MESSAGE + bytes([i]) * i for i in range(9)] + [b""]
    signatures = key.sign_many(messages)
    pairs = list(zip(signatures, messages))
    pairs[2] = (signatures[2], b"another message")                         # wrong message
    pairs[4] = (signatures[4][:-1], messages[4])                            # one byte short
    pairs[6] = (bytes(mldsa.SIGNATURE_SIZE), messages[6])                   # zeros
    pairs[8] = (bytes([signatures[8][0] ^ 1]) + signatures[8][1:], messages[8])  # one flipped bit
    for verifier in mldsa.available_backends():
        public = PublicKey.from_bytes(key.public_key().raw, verifier)
        verdicts = public.verify_many(pairs)
        for (signature, message), ok in zip(pairs, verdicts):
            try:
                public.verify(signature, message)
                alone = True
            except InvalidSignature:
                alone = False
            assert ok is alone
        assert [i for i, ok in enumerate(verdicts) if not ok] == [2, 4, 6, 8]
        assert public.verify_many([]) == []


def test_liboqs_verify_many_uses_the_shim_and_runs_beside_other_threads() -> None:
    _require_sign_many_shim()
    key = PrivateKey.from_seed(SEED, "liboqs")
    public = key.public_key()
    assert public.verify_many_releases_gil
    assert not PublicKey.from_bytes(public.raw, "pyca").verify_many_releases_gil
    messages = [bytes([i]) * 50 for i in range(40)]
    pairs = list(zip(key.sign_many(messages), messages))
    pairs[7] = (pairs[7][0], b"tampered")
    results: dict[int, list[bool]] = {}

    def work(i: int) -> None:
        results[i] = public.verify_many(pairs)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = [i != 7 for i in range(40)]
    assert all(verdicts == expected for verdicts in results.values()) and len(results) == 3
