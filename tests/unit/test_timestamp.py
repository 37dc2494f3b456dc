"""Offline tests of the RFC 3161 client/verifier against tokens made by `openssl ts -reply`.

openssl is the independent oracle: it signs the tokens (no HTTP here) and, where noted,
verifies them too, so these tests check ledgerstream against a second implementation.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import rfc3161ng
from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledgerstream.core.errors import ConfigError, TimestampError
from ledgerstream.core.timestamp import (
    TimestampInfo,
    _check_tsa_usage,
    make_query,
    request_timestamp,
    token_gen_time,
    verify_timestamp,
)
from ledgerstream.stack.devtsa import DEV_POLICY_OID, TsaFiles, ensure_ca

pytestmark = pytest.mark.unit

DATA = b"ledgerstream checkpoint note\n42\nAAAA\n"


def _openssl(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False)


def stamp(files: TsaFiles, data: bytes, tmp: Path, *, digest: str = "sha256",
          signer: tuple[Path, Path] | None = None, cert_req: bool = True) -> bytes:
    """A reply from `openssl ts -reply` with the dev TSA config (optionally another signer)."""
    (tmp / "data").write_bytes(data)
    q = _openssl("ts", "-query", "-data", tmp / "data", f"-{digest}", *(["-cert"] if cert_req else []),
                 "-out", tmp / "q.tsq")
    assert q.returncode == 0, q.stderr
    args: list[str | Path] = ["ts", "-reply", "-config", files.config, "-queryfile", tmp / "q.tsq",
                              "-out", tmp / "r.tsr"]
    if signer is not None:
        args += ["-signer", signer[0], "-inkey", signer[1]]
    r = _openssl(*args, cwd=files.dir)
    assert r.returncode == 0, r.stderr
    return (tmp / "r.tsr").read_bytes()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ec_pki(out: Path, *, eku_critical: bool = True) -> tuple[Path, Path, Path]:
    """EC P-256 CA + TSA certificate; returns (ca.pem, tsa.pem, tsa.key)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test EC CA")).issuer_name(_name("test EC CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("test EC TSA")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=eku_critical)
            .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "ca.pem", out / "tsa.pem", out / "tsa.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TsaFiles:
    return ensure_ca(tmp_path_factory.mktemp("tsa"))


@pytest.fixture(scope="module")
def ca_pem(files: TsaFiles) -> bytes:
    return files.ca_cert.read_bytes()


@pytest.fixture(scope="module")
def token(files: TsaFiles, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return stamp(files, DATA, tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def ec_pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ec_pki(tmp_path_factory.mktemp("ec"))


def _flip(der: bytes, needle: bytes, at: int = -1) -> bytes:
    """Flip one bit of ``needle`` where it occurs (once) in ``der``."""
    assert der.count(needle) == 1
    pos = der.index(needle) + (at % len(needle))
    return der[:pos] + bytes([der[pos] ^ 0x01]) + der[pos + 1:]


def _signed_data(der: bytes):  # noqa: ANN202 - asn1crypto types are untyped
    return tsp.TimeStampResp.load(der)["time_stamp_token"]["content"]


# --- make_query -----------------------------------------------------------------------------

def test_make_query_is_sha256_with_cert_req_and_nonce(tmp_path: Path) -> None:
    q = tsp.TimeStampReq.load(make_query(DATA))
    assert q["version"].native == "v1"
    assert q["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert q["message_imprint"]["hashed_message"].native == hashlib.sha256(DATA).digest()
    assert q["cert_req"].native is True
    assert isinstance(q["nonce"].native, int)
    assert tsp.TimeStampReq.load(make_query(DATA))["nonce"].native != q["nonce"].native
    (tmp_path / "q.tsq").write_bytes(make_query(DATA))
    parsed = _openssl("ts", "-query", "-in", tmp_path / "q.tsq", "-text")
    assert parsed.returncode == 0 and "Certificate required: yes" in parsed.stdout


def test_make_query_without_nonce() -> None:
    assert tsp.TimeStampReq.load(make_query(DATA, nonce=False))["nonce"].native is None


# --- verify_timestamp: accept -----------------------------------------------------------------

def test_verify_accepts_openssl_token(token: bytes, ca_pem: bytes) -> None:
    info = verify_timestamp(token, DATA, ca_pem)
    assert isinstance(info, TimestampInfo)
    assert info.hash_algorithm == "sha256"
    assert info.policy == DEV_POLICY_OID
    assert "DEV-ONLY" in info.tsa_subject
    assert info.serial_number >= 1
    assert info.gen_time.tzinfo is not None and info.gen_time.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.timezone.utc) - info.gen_time) < dt.timedelta(minutes=10)
    assert token_gen_time(token) == info.gen_time
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.serial_number = 0  # type: ignore[misc]


def test_rfc3161ng_agrees_on_rsa_token(token: bytes, files: TsaFiles) -> None:
    """Cross-check with a second implementation (RSA only: rfc3161ng cannot do EC)."""
    tst = rfc3161ng.decode_timestamp_response(token).time_stamp_token
    assert rfc3161ng.check_timestamp(rfc3161ng.encode_timestamp_response(tst), data=DATA, hashname="sha256",
                                     certificate=files.tsa_cert.read_bytes())
    with pytest.raises(ValueError):
        rfc3161ng.check_timestamp(rfc3161ng.encode_timestamp_response(tst), data=b"other", hashname="sha256",
                                  certificate=files.tsa_cert.read_bytes())


@pytest.mark.parametrize("digest", ["sha384", "sha512"])
def test_verify_accepts_other_sha2_imprints(files: TsaFiles, ca_pem: bytes, tmp_path: Path, digest: str) -> None:
    assert verify_timestamp(stamp(files, DATA, tmp_path, digest=digest), DATA, ca_pem).hash_algorithm == digest


def test_ec_p256_tsa_token_verifies(files: TsaFiles, ec_pki: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ca, cert, key = ec_pki
    reply = stamp(files, DATA, tmp_path, signer=(cert, key))
    assert _signed_data(reply)["signer_infos"][0]["signature_algorithm"].signature_algo == "ecdsa"
    info = verify_timestamp(reply, DATA, ca.read_bytes())
    assert info.tsa_subject == "CN=test EC TSA"
    ok = _openssl("ts", "-verify", "-in", tmp_path / "r.tsr", "-data", tmp_path / "data", "-CAfile", ca)
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout
    with pytest.raises(TimestampError) as exc:
        verify_timestamp(reply, DATA + b"x", ca.read_bytes())
    assert exc.value.kind == "imprint_mismatch"


def test_token_gen_times_are_ordered(files: TsaFiles, tmp_path: Path) -> None:
    first = token_gen_time(stamp(files, b"a", tmp_path))
    second = token_gen_time(stamp(files, b"b", tmp_path))
    assert first <= second


# --- verify_timestamp: reject -----------------------------------------------------------------

def test_rejects_other_data(token: bytes, ca_pem: bytes) -> None:
    with pytest.raises(TimestampError) as exc:
        verify_timestamp(token, DATA + b" ", ca_pem)
    assert exc.value.kind == "imprint_mismatch"
    assert exc.value.evidence["computed"] == hashlib.sha256(DATA + b" ").digest()


@pytest.mark.parametrize("at", [0, 17, -1])
def test_rejects_flipped_signature_byte(token: bytes, ca_pem: bytes, at: int) -> None:
    signature = _signed_data(token)["signer_infos"][0]["signature"].native
    with pytest.raises(TimestampError) as exc:
        verify_timestamp(_flip(token, signature, at), DATA, ca_pem)
    assert exc.value.kind == "bad_signature"


def test_rejects_altered_tstinfo(token: bytes, ca_pem: bytes) -> None:
    """The imprint still matches, but the TSTInfo no longer hashes to the signed messageDigest."""
    tst_der = _signed_data(token)["encap_content_info"]["content"].contents
    with pytest.raises(TimestampError) as exc:
        verify_timestamp(_flip(token, tst_der, -1), DATA, ca_pem)
    assert exc.value.kind == "bad_signature"
    assert "messageDigest" in str(exc.value)


def test_rejects_different_ca(token: bytes, ec_pki: tuple[Path, Path, Path], files: TsaFiles,
                              tmp_path_factory: pytest.TempPathFactory) -> None:
    for other_ca in (ec_pki[0].read_bytes(), ensure_ca(tmp_path_factory.mktemp("other")).ca_cert.read_bytes()):
        with pytest.raises(TimestampError) as exc:
            verify_timestamp(token, DATA, other_ca)
        assert exc.value.kind == "untrusted_tsa"


def test_accepts_ca_bundle_containing_the_ca(token: bytes, ca_pem: bytes, ec_pki: tuple[Path, Path, Path]) -> None:
    assert verify_timestamp(token, DATA, ec_pki[0].read_bytes() + ca_pem).serial_number >= 1


@pytest.mark.parametrize("cut", [0, 1, 10, 100, 1000, -1])
def test_rejects_truncated_response(token: bytes, ca_pem: bytes, cut: int) -> None:
    with pytest.raises(TimestampError) as exc:
        verify_timestamp(token[:cut], DATA, ca_pem)
    assert exc.value.kind == "timestamp_malformed"
    with pytest.raises(TimestampError):
        token_gen_time(token[:cut])


def test_rejects_trailing_garbage(token: bytes, ca_pem: bytes) -> None:
    with pytest.raises(TimestampError) as exc:
        verify_timestamp(token + b"\x00", DATA, ca_pem)
    assert exc.value.kind == "timestamp_malformed"


def test_token_without_certificate_is_refused(files: TsaFiles, ca_pem: bytes, tmp_path: Path) -> None:
    reply = stamp(files, DATA, tmp_path, cert_req=False)
    with pytest.raises(TimestampError) as exc:
        verify_timestamp(reply, DATA, ca_pem)
    assert exc.value.kind == "timestamp_malformed" and "certReq" in str(exc.value)


def test_rejection_status_raises(files: TsaFiles, ca_pem: bytes, tmp_path: Path) -> None:
    """md5 is not in the TSA's digest list: openssl answers status rejection / badAlg."""
    reply = stamp(files, DATA, tmp_path, digest="md5")
    for call in (lambda: verify_timestamp(reply, DATA, ca_pem), lambda: token_gen_time(reply)):
        with pytest.raises(TimestampError) as exc:
            call()
        assert exc.value.kind == "tsa_rejected"
        assert exc.value.evidence["fail_info"] == {"bad_alg"}


def test_bad_ca_pem_is_a_config_error(token: bytes) -> None:
    with pytest.raises(ConfigError):
        verify_timestamp(token, DATA, b"not a pem")


def test_tsa_usage_requires_critical_timestamping_eku(tmp_path: Path, ec_pki: tuple[Path, Path, Path]) -> None:
    """openssl refuses to sign with such a certificate, so the check is exercised directly."""
    _check_tsa_usage(x509.load_pem_x509_certificate(ec_pki[1].read_bytes()))
    _, lax_cert, _ = make_ec_pki(tmp_path, eku_critical=False)
    with pytest.raises(TimestampError) as exc:
        _check_tsa_usage(x509.load_pem_x509_certificate(lax_cert.read_bytes()))
    assert exc.value.kind == "untrusted_tsa" and exc.value.evidence["critical"] is False
    with pytest.raises(TimestampError):
        _check_tsa_usage(x509.load_pem_x509_certificate(ec_pki[0].read_bytes()))  # CA: no EKU at all


# --- request_timestamp transport errors ---------------------------------------------------------

def test_request_to_closed_port_is_tsa_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TimestampError) as exc:
        request_timestamp(f"http://127.0.0.1:{port}/", DATA, timeout=2)
    assert exc.value.kind == "tsa_unavailable"
    assert str(port) in str(exc.value)


# --- ensure_ca ------------------------------------------------------------------------------

def test_ensure_ca_is_idempotent(tmp_path: Path) -> None:
    first = ensure_ca(tmp_path / "tsa")
    before = {p.name: p.read_bytes() for p in (first.ca_cert, first.ca_key, first.tsa_cert, first.tsa_key,
                                               first.config, first.serial)}
    second = ensure_ca(tmp_path / "tsa")
    assert second == first
    assert {p.name: p.read_bytes() for p in (second.ca_cert, second.ca_key, second.tsa_cert, second.tsa_key,
                                             second.config, second.serial)} == before
    assert stat.S_IMODE(os.stat(first.ca_key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(first.tsa_key).st_mode) == 0o600


def test_ensure_ca_certificates(files: TsaFiles) -> None:
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    tsa = x509.load_pem_x509_certificate(files.tsa_cert.read_bytes())
    assert "DEV-ONLY" in ca.subject.rfc4514_string() and "DEV-ONLY" in tsa.subject.rfc4514_string()
    tsa.verify_directly_issued_by(ca)
    eku = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    cnf = files.config.read_text()
    assert "ess_cert_id_alg = sha256" in cnf and "digests = sha256, sha384, sha512" in cnf


def test_ensure_ca_reissues_missing_tsa_cert_from_same_ca(tmp_path: Path) -> None:
    files = ensure_ca(tmp_path / "tsa")
    ca_before, tsa_before = files.ca_cert.read_bytes(), files.tsa_cert.read_bytes()
    files.tsa_cert.unlink()
    ensure_ca(tmp_path / "tsa")
    assert files.ca_cert.read_bytes() == ca_before
    assert files.tsa_cert.read_bytes() != tsa_before
    verify_timestamp(stamp(files, DATA, tmp_path), DATA, ca_before)


def test_ensure_ca_refuses_half_a_ca(tmp_path: Path) -> None:
    files = ensure_ca(tmp_path / "tsa")
    files.ca_key.unlink()
    with pytest.raises(ConfigError):
        ensure_ca(tmp_path / "tsa")
