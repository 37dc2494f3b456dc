"""NIST ACVP ML-DSA-65 vectors (FIPS 204 keyGen / sigGen / sigVer) on every ML-DSA backend.

tests/vectors/acvp/ holds the ML-DSA-65 test groups of ACVP-Server v1.1.0.43, unchanged
(provenance, and which group runs where, in its README.md). The expected values are NIST's,
never our code. Each case runs on pyca and on liboqs; liboqs is loaded without the load-time
gate (a broken build shows here as failures, not as a skip), and under CI=true an absent
liboqs is a failure, as in test_mldsa_wycheproof.py.

ACVP groups differ by interface, and FIPS 204 fixes how each one reaches the same core
(ML-DSA.Verify_internal / Sign_internal, Algorithms 7 and 8, which hash mu = H(tr || M')):

* external / pure: what ledgerstream uses (with the empty context). Run through each
  backend's own verifier (``_Backend.verifier``), and for liboqs signing through
  ``OQS_SIG_sign_with_ctx_str`` or ledgerstream's signer.
* external / preHash (HashML-DSA, Algorithm 4/5): M' = 1 || |ctx| || ctx || OID || PH(M).
* internal (Algorithm 7/8 on M' = the message itself).
* internal / externalMu: the vector gives mu.

pyca's keys have ``verify_mu`` / ``sign_mu`` (cryptography 50): every non-pure group is checked
through them with mu computed here from the group's M'. liboqs exports its Sign_internal /
Verify_internal (``pqcrystals_ml_dsa_65_{ref,avx2}_{signature,verify}_internal``, taking
M' as a prefix and a message, and rnd explicitly), which take every group but externalMu:
liboqs 0.13 has no entry point that accepts mu. Both compiled implementations run (avx2
only on a CPU that has AVX2 and POPCNT: the one ``OQS_SIG_*`` dispatches to there).

Signing vectors are bit-exact only where rnd can be fixed: liboqs draws rnd from
``OQS_randombytes``, which the test replaces for one call (exactly one 32-byte draw is
checked). pyca signs hedged with OpenSSL's randomness and loads only 32-byte seeds, so for
pyca the sigGen vectors check key generation from the seed (FIPS204-tr1 seed groups), that
NIST's signature verifies, and that pyca's own signature of the same input verifies.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature as PycaInvalidSignature

from ledgerstream.core import mldsa

pytestmark = pytest.mark.unit

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "acvp"
FILES = (
    "ML-DSA-keyGen-FIPS204/internalProjection.json",
    "ML-DSA-sigVer-FIPS204/internalProjection.json",
    "ML-DSA-sigVer-FIPS204/expectedResults.json",
    "ML-DSA-sigGen-FIPS204/prompt.json",
    "ML-DSA-sigGen-FIPS204/expectedResults.json",
    "ML-DSA-sigGen-FIPS204-tr1/prompt.json",
    "ML-DSA-sigGen-FIPS204-tr1/expectedResults.json",
)


def _load(rel: str) -> dict:
    data = json.loads((VECTORS / rel).read_text(encoding="utf-8"))
    assert data["algorithm"] == "ML-DSA" and data["revision"].startswith("FIPS204")
    assert {g.get("parameterSet", "ML-DSA-65") for g in data["testGroups"]} == {"ML-DSA-65"}
    return data


def _cases(rel: str) -> list[tuple[dict, dict]]:
    return [(g, t) for g in _load(rel)["testGroups"] for t in g["tests"]]


def _expected(rel: str, field: str) -> dict[int, object]:
    return {t["tcId"]: t[field] for _, t in _cases(rel)}


def _kind(group: dict) -> str:
    if group["signatureInterface"] == "internal":
        return "externalMu" if group["externalMu"] else "internal"
    return "pure" if group["preHash"] == "pure" else "preHash"


def _id(case: tuple[dict, dict]) -> str:
    group, test = case
    note = test.get("reason", "")[:32].replace(" ", "_")
    kind = _kind(group) if "signatureInterface" in group else ""
    return "-".join(p for p in (f"tg{group['tgId']}", kind, f"tc{test['tcId']}", note) if p)


# --- FIPS 204 message formatting (Algorithms 2-5, 7) -------------------------------------

# DER OIDs of the pre-hash functions (FIPS 204 section 5.4; NIST CSOR 2.16.840.1.101.3.4.2.x)
_HASH_OID = {
    "SHA2-256": 1, "SHA2-384": 2, "SHA2-512": 3, "SHA2-224": 4, "SHA2-512/224": 5, "SHA2-512/256": 6,
    "SHA3-224": 7, "SHA3-256": 8, "SHA3-384": 9, "SHA3-512": 10, "SHAKE-128": 11, "SHAKE-256": 12,
}
_HASHLIB = {
    "SHA2-224": "sha224", "SHA2-256": "sha256", "SHA2-384": "sha384", "SHA2-512": "sha512",
    "SHA2-512/224": "sha512_224", "SHA2-512/256": "sha512_256", "SHA3-224": "sha3_224",
    "SHA3-256": "sha3_256", "SHA3-384": "sha3_384", "SHA3-512": "sha3_512",
}


def _prehash(name: str, message: bytes) -> bytes:
    if name == "SHAKE-128":
        return hashlib.shake_128(message).digest(32)
    if name == "SHAKE-256":
        return hashlib.shake_256(message).digest(64)
    return hashlib.new(_HASHLIB[name], message).digest()


def _m_prime(group: dict, test: dict) -> tuple[bytes, bytes]:
    """(prefix, message) with M' = prefix || message, as Sign_internal / Verify_internal
    take it; not defined for externalMu groups."""
    kind, message = _kind(group), bytes.fromhex(test["message"])
    if kind == "internal":
        return b"", message
    context = bytes.fromhex(test["context"])
    if kind == "pure":
        return bytes([0, len(context)]) + context, message
    oid = bytes.fromhex("06096086480165030402") + bytes([_HASH_OID[test["hashAlg"]]])
    return bytes([1, len(context)]) + context + oid, _prehash(test["hashAlg"], message)


def _mu(public: bytes, group: dict, test: dict) -> bytes:
    if _kind(group) == "externalMu":
        return bytes.fromhex(test["mu"])
    prefix, message = _m_prime(group, test)
    tr = hashlib.shake_256(public).digest(64)
    return hashlib.shake_256(tr + prefix + message).digest(64)


def test_message_formatting_matches_the_pure_api() -> None:
    """The M' / mu built here is FIPS 204's: pyca's pure verify and verify_mu agree on it."""
    key = mldsa._pyca_private(bytes(range(32)))
    public = key.public_key()
    group = {"signatureInterface": "external", "preHash": "pure"}
    test = {"message": "616263", "context": "0102"}
    signature = key.sign(b"abc", b"\x01\x02")
    public.verify_mu(signature, _mu(public.public_bytes_raw(), group, test))
    with pytest.raises(PycaInvalidSignature):
        public.verify_mu(signature, _mu(public.public_bytes_raw(), group, {**test, "context": "0103"}))


# --- the backends --------------------------------------------------------------------------

class _Oqs:
    """liboqs as the backend uses it, plus its exported FIPS 204 internal functions."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.backend = mldsa._LiboqsBackend(lib)
        self._lib = lib
        lib.OQS_SIG_sign_with_ctx_str.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
        ]
        lib.OQS_CPU_has_extension.argtypes = [ctypes.c_int]
        self.implementations: dict[str, tuple[ctypes._CFuncPtr, ctypes._CFuncPtr]] = {}
        # OQS_CPU_EXT_AVX2 = 4, OQS_CPU_EXT_POPCNT = 10 (liboqs 0.13 common.h)
        names = ["ref"] + (["avx2"] if lib.OQS_CPU_has_extension(4) and lib.OQS_CPU_has_extension(10) else [])
        for impl in names:
            try:
                sign = getattr(lib, f"pqcrystals_ml_dsa_65_{impl}_signature_internal")
                verify = getattr(lib, f"pqcrystals_ml_dsa_65_{impl}_verify_internal")
            except AttributeError:  # built without that implementation
                continue
            sign.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_size_t,
                             ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p]
            verify.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
                               ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p]
            self.implementations[f"liboqs-{impl}"] = (sign, verify)
        assert "liboqs-ref" in self.implementations

    @contextlib.contextmanager
    def randomness(self, data: bytes) -> Iterator[list[int]]:
        """liboqs's random source hands out ``data`` for the calls made inside; yields the
        sizes asked for (one keygen or one sign: exactly one draw of len(data) bytes)."""
        asked: list[int] = []

        def source(out: ctypes.Array[ctypes.c_uint8], size: int) -> None:
            asked.append(size)
            ctypes.memmove(out, data if size == len(data) else os.urandom(size), size)

        callback = mldsa._RANDOMBYTES(source)  # referenced until switched back
        with _RNG_LOCK, self.backend._keygen_lock:
            self._lib.OQS_randombytes_custom_algorithm(callback)
            try:
                yield asked
            finally:
                self._lib.OQS_randombytes_switch_algorithm(b"system")

    def keypair(self, seed: bytes) -> tuple[bytes, bytes]:
        """FIPS 204 KeyGen from xi: (pk, expanded sk)."""
        public = ctypes.create_string_buffer(mldsa.PUBLIC_KEY_SIZE)
        secret = ctypes.create_string_buffer(mldsa._OQS_SECRET_KEY_SIZE)
        with self.randomness(seed) as asked:
            status = self._lib.OQS_SIG_keypair(self.backend._sig, public, secret)
        assert status == 0 and asked == [len(seed)]
        return public.raw, secret.raw

    def sign(self, secret: bytes, message: bytes, context: bytes, rnd: bytes) -> bytes:
        """The public signing call (ML-DSA.Sign, external, pure) with rnd fixed."""
        out, size = ctypes.create_string_buffer(mldsa.SIGNATURE_SIZE), ctypes.c_size_t(mldsa.SIGNATURE_SIZE)
        with self.randomness(rnd) as asked:
            status = self._lib.OQS_SIG_sign_with_ctx_str(self.backend._sig, out, ctypes.byref(size), message,
                                                         len(message), context, len(context), secret)
        assert status == 0 and asked == [32]
        return out.raw[: size.value]

    def sign_internal(self, impl: str, secret: bytes, prefix: bytes, message: bytes, rnd: bytes) -> bytes:
        out, size = ctypes.create_string_buffer(mldsa.SIGNATURE_SIZE), ctypes.c_size_t(mldsa.SIGNATURE_SIZE)
        status = self.implementations[impl][0](out, ctypes.byref(size), message, len(message), prefix or None,
                                               len(prefix), rnd, secret)
        assert status == 0
        return out.raw[: size.value]

    def verify_internal(self, impl: str, signature: bytes, prefix: bytes, message: bytes, public: bytes) -> bool:
        return self.implementations[impl][1](signature, len(signature), message, len(message), prefix or None,
                                             len(prefix), public) == 0


_RNG_LOCK = threading.Lock()  # liboqs's random source is process-wide


def _liboqs() -> _Oqs | None:
    """liboqs straight from its loader (ungated), as test_mldsa_wycheproof.py loads it."""
    for path in mldsa._liboqs_candidates():
        try:
            lib = ctypes.CDLL(path)
            lib.OQS_init()
            return _Oqs(lib)
        except OSError:
            continue
    message = f"liboqs backend absent: {mldsa._probe_liboqs().reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: the liboqs build must not fail)")
    print(message)
    return None


@pytest.fixture(scope="module")
def oqs() -> _Oqs | None:
    return _liboqs()


def _pyca_verdict(public: bytes, group: dict, test: dict, signature: bytes) -> bool:
    if _kind(group) == "pure":  # the backend's own verifier, as ledgerstream calls it
        verify = mldsa._PycaBackend().verifier(public, bytes.fromhex(test["context"]))
        return verify(signature, bytes.fromhex(test["message"]))
    try:
        mldsa._pyca_mldsa().MLDSA65PublicKey.from_public_bytes(public).verify_mu(signature, _mu(public, group, test))
    except (PycaInvalidSignature, ValueError):
        return False
    return True


def _liboqs_verdicts(oqs: _Oqs | None, public: bytes, group: dict, test: dict, signature: bytes) -> dict[str, bool]:
    """Each liboqs path's verdict; none for externalMu (no such entry point in liboqs 0.13)."""
    if oqs is None or _kind(group) == "externalMu":
        return {}
    prefix, message = _m_prime(group, test)
    verdicts = {impl: oqs.verify_internal(impl, signature, prefix, message, public) for impl in oqs.implementations}
    if _kind(group) == "pure":  # and the call ledgerstream makes
        verdicts["liboqs"] = oqs.backend.verifier(public, bytes.fromhex(test["context"]))(signature, message)
    return verdicts


# --- keyGen -------------------------------------------------------------------------------

KEYGEN = _cases("ML-DSA-keyGen-FIPS204/internalProjection.json")


@pytest.mark.parametrize("case", KEYGEN, ids=[_id(c) for c in KEYGEN])
def test_keygen_vector(case: tuple[dict, dict], oqs: _Oqs | None) -> None:
    """KeyGen(seed) is NIST's pk on every backend (ledgerstream's key derivation), and
    liboqs's expanded sk is NIST's sk (pyca never exposes an expanded key)."""
    _, test = case
    seed, public, secret = (bytes.fromhex(test[k]) for k in ("seed", "pk", "sk"))
    backends: list[mldsa._Backend] = [mldsa._PycaBackend()] + ([oqs.backend] if oqs else [])
    for backend in backends:
        assert backend.signer(seed)[0] == public, backend.name
    if oqs:
        assert oqs.keypair(seed) == (public, secret)


# --- sigVer -------------------------------------------------------------------------------

SIGVER = _cases("ML-DSA-sigVer-FIPS204/internalProjection.json")
SIGVER_ANSWERS = _expected("ML-DSA-sigVer-FIPS204/expectedResults.json", "testPassed")


def test_sigver_projection_matches_the_expected_results() -> None:
    assert {t["tcId"]: t["testPassed"] for _, t in SIGVER} == SIGVER_ANSWERS
    assert len(SIGVER) == 60 and sum(SIGVER_ANSWERS.values()) == 12


@pytest.mark.parametrize("case", SIGVER, ids=[_id(c) for c in SIGVER])
def test_sigver_vector(case: tuple[dict, dict], oqs: _Oqs | None) -> None:
    """Every backend path that can express the group gives NIST's verdict (so all agree)."""
    group, test = case
    public, signature = bytes.fromhex(test["pk"]), bytes.fromhex(test["signature"])
    want = SIGVER_ANSWERS[test["tcId"]]
    verdicts = {"pyca": _pyca_verdict(public, group, test, signature),
                **_liboqs_verdicts(oqs, public, group, test, signature)}
    assert verdicts == dict.fromkeys(verdicts, want), test["reason"]
    if _kind(group) == "pure" and not test["context"]:  # ledgerstream's own configuration
        for name in ["pyca"] + (["liboqs"] if oqs else []):
            key = mldsa.PublicKey(public, name)
            assert key.verify_many([(signature, bytes.fromhex(test["message"]))]) == [want], name


# --- sigGen -------------------------------------------------------------------------------

def _siggen(vector_set: str) -> list[tuple[dict, dict]]:
    answers = _expected(f"{vector_set}/expectedResults.json", "signature")
    cases = _cases(f"{vector_set}/prompt.json")
    assert set(answers) == {t["tcId"] for _, t in cases}
    return [(g, {**t, "signature": answers[t["tcId"]]}) for g, t in cases]


SIGGEN = _siggen("ML-DSA-sigGen-FIPS204")
SIGGEN_SEED = _siggen("ML-DSA-sigGen-FIPS204-tr1")


def _rnd(group: dict, test: dict) -> bytes:
    return bytes(32) if group["deterministic"] else bytes.fromhex(test["rnd"])


def _liboqs_signatures(oqs: _Oqs, secret: bytes, group: dict, test: dict) -> dict[str, bytes]:
    """liboqs's signature of the case by each path that can express it (rnd fixed)."""
    if _kind(group) == "externalMu":
        return {}
    prefix, message = _m_prime(group, test)
    rnd = _rnd(group, test)
    signatures = {impl: oqs.sign_internal(impl, secret, prefix, message, rnd) for impl in oqs.implementations}
    if _kind(group) == "pure":
        signatures["liboqs"] = oqs.sign(secret, message, bytes.fromhex(test["context"]), rnd)
    return signatures


@pytest.mark.parametrize("case", SIGGEN, ids=[_id(c) for c in SIGGEN])
def test_siggen_vector(case: tuple[dict, dict], oqs: _Oqs | None) -> None:
    """ML-DSA-sigGen-FIPS204 gives expanded private keys: liboqs signs with them and must
    produce NIST's signature bit for bit. pyca cannot load an expanded key, and liboqs has
    no external-mu signing: those cases are skipped (tests/vectors/acvp/README.md)."""
    group, test = case
    if _kind(group) == "externalMu":
        pytest.skip("external mu with an expanded key: liboqs 0.13 cannot sign a given mu, pyca cannot load the key")
    if oqs is None:
        pytest.skip("only liboqs signs with an expanded key (pyca loads 32-byte seeds); liboqs is absent")
    signatures = _liboqs_signatures(oqs, bytes.fromhex(test["sk"]), group, test)
    assert signatures and signatures == dict.fromkeys(signatures, bytes.fromhex(test["signature"]))


@pytest.mark.parametrize("case", SIGGEN_SEED, ids=[_id(c) for c in SIGGEN_SEED])
def test_siggen_seed_vector(case: tuple[dict, dict], oqs: _Oqs | None) -> None:
    """ML-DSA-sigGen-FIPS204-tr1, seed keys (what ledgerstream keys are): every backend
    derives the same key from the seed; NIST's signature verifies on every path that can
    express the group; liboqs reproduces it bit for bit (through ledgerstream's own signer
    when the case is pure with an empty context); pyca's own (hedged) signature verifies."""
    group, test = case
    seed, expected = bytes.fromhex(test["seed"]), bytes.fromhex(test["signature"])
    pyca_key = mldsa._pyca_private(seed)
    public = pyca_key.public_key().public_bytes_raw()

    verdicts = {"pyca": _pyca_verdict(public, group, test, expected),
                **_liboqs_verdicts(oqs, public, group, test, expected)}
    assert verdicts == dict.fromkeys(verdicts, True)

    if _kind(group) == "pure":
        ours = pyca_key.sign(bytes.fromhex(test["message"]), bytes.fromhex(test["context"]) or None)
    else:
        ours = pyca_key.sign_mu(_mu(public, group, test))
    assert _pyca_verdict(public, group, test, ours)
    assert all(_liboqs_verdicts(oqs, public, group, test, ours).values())

    if oqs is None:
        return
    derived, secret = oqs.keypair(seed)
    assert derived == public
    signatures = _liboqs_signatures(oqs, secret, group, test)
    if _kind(group) == "pure" and not test["context"]:  # ledgerstream's configuration and signer
        raw, sign, _ = oqs.backend.signer(seed)
        with oqs.randomness(_rnd(group, test)) as asked:
            signatures["ledgerstream-liboqs"] = sign(bytes.fromhex(test["message"]))
        assert raw == public and asked == [32]
    assert bool(signatures) is (_kind(group) != "externalMu")
    assert signatures == dict.fromkeys(signatures, expected)


# --- provenance, and the load-time gate -----------------------------------------------------

def test_vendored_files_are_the_ones_the_readme_lists() -> None:
    """The README names each file with its case count and SHA-256 (as on disk)."""
    readme = (VECTORS / "README.md").read_text(encoding="utf-8")
    for rel in FILES:
        data = (VECTORS / rel).read_bytes()
        cases = sum(len(g["tests"]) for g in json.loads(data)["testGroups"])
        assert f"`{rel}` | {cases} |" in readme, rel
        assert hashlib.sha256(data).hexdigest() in readme, rel


def test_gate_acvp_cases_are_vendored_cases() -> None:
    """The gate's ACVP cases are ML-DSA-sigVer-FIPS204 group 3 cases with their values
    unchanged (keys renamed to the gate's format), valid and invalid ones."""
    gate = json.loads(mldsa.GATE_VECTORS.read_text(encoding="utf-8"))["acvp_tests"]
    by_id = {t["tcId"]: (g, t) for g, t in SIGVER}
    for case in gate:
        group, test = by_id[case["tcId"]]
        assert case["source"] == f"acvp ML-DSA-sigVer-FIPS204 tgId {group['tgId']}" and _kind(group) == "pure"
        assert (case["publicKey"], case["ctx"], case["msg"], case["sig"], case["comment"]) == \
            (test["pk"], test["context"], test["message"], test["signature"], test["reason"])
        assert case["result"] == ("valid" if SIGVER_ANSWERS[test["tcId"]] else "invalid")
    assert {c["result"] for c in gate} == {"valid", "invalid"} and len({c["comment"] for c in gate}) == 5


def test_gate_runs_the_acvp_cases(oqs: _Oqs | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every backend passes them, and one that disagrees with an ACVP case is refused."""
    gate = json.loads(mldsa.GATE_VECTORS.read_text(encoding="utf-8"))
    backends: list[mldsa._Backend] = [mldsa._PycaBackend()] + ([oqs.backend] if oqs else [])
    for backend in backends:
        assert mldsa.conformance_failures(backend, gate["acvp_tests"]) == [], backend.name
    flipped = dict(gate, acvp_tests=[dict(c, result="valid") if c["tcId"] == 31 else c for c in gate["acvp_tests"]])
    path = tmp_path / "gate.json"
    path.write_text(json.dumps(flipped), encoding="utf-8")
    monkeypatch.setattr(mldsa, "GATE_VECTORS", path)
    refused = mldsa._gate(mldsa._PycaBackend(), "cryptography")
    assert refused.backend is None
    assert "acvp ML-DSA-sigVer-FIPS204 tgId 3 tcId 31 (modified signature - z): expected valid, got invalid" \
        in refused.reason
