"""Fuzz the RFC 3161 token parser: any bytes, and mutants of a real token from `openssl ts
-reply` with the dev TSA, either verify or raise a TimestampError, never anything else."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import fuzz_profile  # noqa: F401  (the Hypothesis profile: bounded in CI, LEDGERSTREAM_FUZZ_EXAMPLES)
from hypothesis import given
from hypothesis import strategies as st

from fuzz_mutations import mutated
from ledgerstream.core.errors import TimestampError
from ledgerstream.core.timestamp import make_query, token_gen_time, verify_timestamp
from ledgerstream.stack.devtsa import ensure_ca

pytestmark = pytest.mark.unit

DATA = b"ledgerstream/dev\n1\n" + b"A" * 44 + b"\n"


def _real_token() -> tuple[bytes, bytes]:
    """(a granted reply over DATA, the CA PEM), made by openssl, not by our code."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed", allow_module_level=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = ensure_ca(Path(tmp, "tsa"))
        query = Path(tmp, "q.tsq")
        query.write_bytes(make_query(DATA))
        reply = Path(tmp, "r.tsr")
        done = subprocess.run([openssl, "ts", "-reply", "-config", str(files.config), "-queryfile", str(query),
                               "-out", str(reply)], cwd=files.dir, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return reply.read_bytes(), files.ca_cert.read_bytes()


TOKEN, CA = _real_token()


def test_the_seed_token_verifies() -> None:
    """Guards the target: mutants start from a token that passes every check."""
    verify_timestamp(TOKEN, DATA, CA)


@given(st.one_of(st.binary(max_size=400), mutated([TOKEN])))
def test_verify_raises_only_timestamp_error(der: bytes) -> None:
    try:
        verify_timestamp(der, DATA, CA)
    except TimestampError:
        return
    assert der == TOKEN or token_gen_time(der) == token_gen_time(TOKEN)


@given(st.one_of(st.binary(max_size=400), mutated([TOKEN])))
def test_gen_time_raises_only_timestamp_error(der: bytes) -> None:
    try:
        token_gen_time(der)
    except TimestampError:
        pass


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new)


@pytest.mark.parametrize("old, new, finding", [
    # the embedded TSA certificate says X.509 version 4: cryptography raised InvalidVersion
    (b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03", "not a valid X509 version"),
    # its SubjectPublicKeyInfo OID swallows the NULL parameters: cert.public_key() raised UnsupportedAlgorithm
    (b"0\r\x06\t*\x86H\x86\xf7\r\x01\x01\x01\x05\x00\x03\x82", b"0\r\x06\x0b*\x86H\x86\xf7\r\x01\x01\x01\x05\x00\x03\x82",
     "public key is unusable"),
], ids=["invalid-x509-version", "unknown-key-type"])
def test_regression_malformed_signer_certificate(old: bytes, new: bytes, finding: str) -> None:
    """Found by fuzzing (LEDGERSTREAM_FUZZ_EXAMPLES=2000): both escaped as non-TimestampError."""
    with pytest.raises(TimestampError, match=finding):
        verify_timestamp(_replace_once(TOKEN, old, new), DATA, CA)
