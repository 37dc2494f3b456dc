"""FIPS 204 conformance of every ML-DSA backend against the vendored public vectors.

tests/vectors/wycheproof/ holds Project Wycheproof's ML-DSA-65 files unchanged (provenance in
its README.md). One parametrised test per file, one case per vector; the expected verdict is
the file's ``result``, never our code. Each case runs on pyca and on liboqs: liboqs is looked
up without the load-time gate (so a broken build shows here as failures, not as a skip), and
under CI=true an absent liboqs is a failure. IncorrectPublicKeyLength cases are checked at
our API boundary (PublicKey.from_bytes refuses them before any backend sees them).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerstream.core import mldsa
from ledgerstream.core.errors import ConfigError

pytestmark = pytest.mark.unit

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "wycheproof"


def _cases(name: str) -> list[tuple[dict, dict]]:
    data = json.loads((VECTORS / name).read_text())
    assert data["algorithm"] == "ML-DSA-65"
    cases = [(group, test) for group in data["testGroups"] for test in group["tests"]]
    assert len(cases) == data["numberOfTests"]
    return cases


def _id(case: tuple[dict, dict]) -> str:
    test = case[1]
    return f"tcId{test['tcId']}-{'+'.join(test['flags']) or test['result']}"


def _backends() -> dict[str, mldsa._Backend]:
    """pyca, and liboqs straight from its loader (ungated): both must pass every vector."""
    found: dict[str, mldsa._Backend] = {"pyca": mldsa._PycaBackend()}
    for path in mldsa._liboqs_candidates():
        try:
            lib = mldsa.ctypes.CDLL(path)
            lib.OQS_init()
            found["liboqs"] = mldsa._LiboqsBackend(lib)
            break
        except OSError:
            continue
    if "liboqs" not in found:
        message = f"liboqs backend absent: {mldsa._probe_liboqs().reason}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the liboqs build must not fail)")
        print(message)
    return found


@pytest.fixture(scope="module")
def backends() -> dict[str, mldsa._Backend]:
    return _backends()


def _verdict(backend: mldsa._Backend, public: bytes, test: dict) -> bool:
    context = bytes.fromhex(test.get("ctx", ""))
    return backend.verifier(public, context)(bytes.fromhex(test["sig"]), bytes.fromhex(test["msg"]))


VERIFY = _cases("mldsa_65_verify_test.json")


@pytest.mark.parametrize("case", VERIFY, ids=[_id(c) for c in VERIFY])
def test_verify_vector(case: tuple[dict, dict], backends: dict[str, mldsa._Backend]) -> None:
    group, test = case
    public = bytes.fromhex(group["publicKey"])
    want = test["result"] == "valid"
    if len(public) != mldsa.PUBLIC_KEY_SIZE:
        assert not want
        with pytest.raises(ConfigError, match="1952"):
            mldsa.PublicKey.from_bytes(public, "pyca")
        return
    verdicts = {name: _verdict(backend, public, test) for name, backend in backends.items()}
    assert verdicts == {name: want for name in backends}, test["comment"]
    if not test.get("ctx") and len(bytes.fromhex(test["sig"])) == mldsa.SIGNATURE_SIZE:
        # the public API (empty context) agrees too
        key = mldsa.PublicKey.from_bytes(public, "pyca")
        assert key.verify_many([(bytes.fromhex(test["sig"]), bytes.fromhex(test["msg"]))]) == [want]


def _sign_cases(name: str) -> list[tuple[dict, dict]]:
    """Message (not external-mu) cases with a well-formed key: what our API can express."""
    return [(g, t) for g, t in _cases(name) if "msg" in t and "IncorrectPrivateKeyLength" not in t["flags"]
            and "InvalidPrivateKey" not in t["flags"]]


SIGN_SEED = _sign_cases("mldsa_65_sign_seed_test.json")


@pytest.mark.parametrize("case", SIGN_SEED, ids=[_id(c) for c in SIGN_SEED])
def test_sign_seed_vector(case: tuple[dict, dict], backends: dict[str, mldsa._Backend]) -> None:
    """KeyGen from the seed gives the file's public key; its signature gets the file's
    verdict; our (hedged) signature of the same message verifies on every backend."""
    group, test = case
    seed, public = bytes.fromhex(group["privateSeed"]), bytes.fromhex(group["publicKey"])
    want = test["result"] == "valid"
    for name, backend in backends.items():
        raw, sign, _ = backend.signer(seed)
        assert raw == public, name
        assert _verdict(backend, public, test) is want, name
        if want and not test.get("ctx"):
            ours = sign(bytes.fromhex(test["msg"]))
            assert {n: _verdict(b, public, {**test, "sig": ours.hex()}) for n, b in backends.items()} == \
                {n: True for n in backends}
    if not want:
        assert test["flags"] == ["InvalidContext"]
        assert not any(_verdict(b, public, test) for b in backends.values())


SIGN_NOSEED = _sign_cases("mldsa_65_sign_noseed_test.json")


@pytest.mark.parametrize("case", SIGN_NOSEED, ids=[_id(c) for c in SIGN_NOSEED])
def test_sign_noseed_vector(case: tuple[dict, dict], backends: dict[str, mldsa._Backend]) -> None:
    """Our keys are seeds, so only the verdict on the file's signature applies here."""
    group, test = case
    public = bytes.fromhex(group["publicKey"])
    want = test["result"] == "valid"
    assert {n: _verdict(b, public, test) for n, b in backends.items()} == {n: want for n in backends}


def test_every_vector_file_is_complete_and_unchanged() -> None:
    """The README's counts and SHA-256 sums are those of the files on disk."""
    import hashlib

    readme = (VECTORS / "README.md").read_text()
    for name in ("mldsa_65_verify_test.json", "mldsa_65_sign_seed_test.json", "mldsa_65_sign_noseed_test.json"):
        assert hashlib.sha256((VECTORS / name).read_bytes()).hexdigest() in readme, name


def test_install_check_agrees_on_the_installed_liboqs(backends: dict[str, mldsa._Backend]) -> None:
    """scripts/check_liboqs_vectors.py (what install_liboqs.sh runs) passes the library in use."""
    if "liboqs" not in backends:
        pytest.skip("liboqs backend absent")
    library = mldsa._liboqs_candidates()[0]
    script = Path(__file__).resolve().parents[2] / "scripts" / "check_liboqs_vectors.py"
    done = subprocess.run([sys.executable, str(script), library, str(VECTORS / "mldsa_65_verify_test.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "210/210 vectors agree" in done.stderr
