"""The checked-in ML-DSA-65 vectors (tests/vectors/mldsa/), one test per vector, on every backend.

mldsa65.json comes from tests/vectors/gen_mldsa.py; wycheproof_mldsa65.json is an unchanged
upstream case, so the key derivation and verification are also checked against a third
implementation.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledgerstream.core import mldsa
from ledgerstream.core.errors import InvalidSignature

pytestmark = pytest.mark.unit

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "mldsa"
FILES = ("mldsa65.json", "wycheproof_mldsa65.json")


def _load(name: str) -> dict:
    data = json.loads((VECTORS / name).read_text())
    assert data["spec"] == "FIPS 204 ML-DSA-65, pure, empty context"
    assert data["provenance"]
    return data


CASES = [(name, case) for name in FILES for case in _load(name)["tests"]]


def test_generated_vectors_cover_good_and_bad_cases() -> None:
    wants = [case["want_err"] for case in _load("mldsa65.json")["tests"]]
    assert None in wants and wants.count("InvalidSignature") >= 3


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[f"{n}: {c['desc']}" for n, c in CASES])
def test_vector(case: dict) -> None:
    seed = bytes.fromhex(case["seed"])
    public_raw = bytes.fromhex(case["public_key"])
    message = bytes.fromhex(case["message"])
    signature = bytes.fromhex(case["signature"])
    for backend in mldsa.available_backends():
        assert mldsa.PrivateKey.from_seed(seed, backend).public_key().raw == public_raw, backend
        public = mldsa.PublicKey.from_bytes(public_raw, backend)
        if case["want_err"] is None:
            public.verify(signature, message)
        else:
            assert case["want_err"] == "InvalidSignature"
            with pytest.raises(InvalidSignature):
                public.verify(signature, message)
