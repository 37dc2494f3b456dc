"""RFC 3161 time-stamp tokens: request one from a TSA and verify it offline.

The token covers exactly the bytes the caller passes (ledgerstream stamps checkpoint note
bytes); the TSA only ever sees their SHA-256 digest. Verification is done here with
asn1crypto (parsing) and cryptography (signatures) rather than rfc3161ng, because
rfc3161ng only handles RSA signers and does not check the certificate chain or EKU.

Failures raise :class:`TimestampError`; ``kind`` tells them apart:

``tsa_unavailable``   HTTP or transport failure talking to the TSA
``tsa_rejected``      the TSA answered with a status other than granted
``tsa_bad_response``  the reply does not answer our query (nonce / imprint differ)
``timestamp_malformed`` not a DER TimeStampResp, or a required part is missing
``imprint_mismatch``  the token stamps other data (or an unaccepted hash algorithm)
``bad_signature``     the CMS signature or signed messageDigest does not check out
``untrusted_tsa``     the signer certificate does not chain to the CA, is out of validity
                      at genTime, or lacks the critical timeStamping EKU
"""
from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import ipaddress
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import rfc3161ng
from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import exceptions as crypto_exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyasn1.codec.der import encoder as der_encoder

from ledgerstream.core.errors import ConfigError, TimestampError

QUERY_CONTENT_TYPE = "application/timestamp-query"
REPLY_CONTENT_TYPE = "application/timestamp-reply"
QUERY_HASH = "sha256"
MAX_REPLY_BYTES = 1024 * 1024  # a reply with a short chain is a few KiB

#: Hash algorithms accepted for the message imprint and the CMS signature (no SHA-1 / MD5).
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class TimestampInfo:
    """What a verified token asserts: these bytes' digest existed at ``gen_time``."""

    gen_time: dt.datetime  # aware, UTC
    serial_number: int
    policy: str  # dotted OID
    hash_algorithm: str  # of the message imprint, e.g. "sha256"
    tsa_subject: str  # RFC 4514 subject of the signing certificate


class _TimeStampResp(core.Sequence):
    """RFC 3161 TimeStampResp; asn1crypto's own marks the token required, but rejections omit it."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


@dataclass(frozen=True)
class _Token:
    """The parts of a granted TimeStampResp that are checked, decoded to plain values."""

    imprint_algorithm: str
    imprint: bytes
    gen_time: dt.datetime
    serial_number: int
    policy: str
    nonce: int | None
    tst_info_der: bytes  # the exact encapsulated bytes the messageDigest covers
    digest_algorithm: str  # SignerInfo.digestAlgorithm
    signature_scheme: str  # "rsassa_pkcs1v15", "ecdsa", ... or the dotted OID if unknown
    signature_hash: str | None  # hash named by signatureAlgorithm, None for bare rsaEncryption
    signature: bytes
    signed_attrs_der: bytes  # re-tagged as a universal SET: what the signature covers
    signed_attrs: dict[str, list[Any]]  # attribute name -> its values (native)
    ess_cert_id: tuple[str, bytes]  # (hash algorithm, hash) pinning the signer certificate
    signer_cert_der: bytes | None  # None when the token does not carry it


def make_query(data: bytes, *, nonce: bool = True) -> bytes:
    """DER TimeStampReq for SHA-256(data) asking for the TSA certificate (certReq true).

    The certificate is requested so the token verifies with only the CA at hand; the nonce
    lets :func:`request_timestamp` tell this reply from a replayed one.
    """
    request = rfc3161ng.make_timestamp_request(
        digest=hashlib.sha256(data).digest(),
        hashname=QUERY_HASH,
        include_tsa_certificate=True,
        nonce=secrets.randbits(64) if nonce else None,
    )
    return bytes(der_encoder.encode(request))


def _opener_for(url: str) -> urllib.request.OpenerDirector:
    """No HTTP proxy for loopback TSAs: a corporate ``http_proxy`` must not swallow the dev TSA."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return urllib.request.build_opener(urllib.request.ProxyHandler({})) if loopback else urllib.request.build_opener()


def request_timestamp(url: str, data: bytes, *, timeout: float = 10.0) -> bytes:
    """POST a query for ``data`` to the TSA at ``url``; return the whole DER TimeStampResp.

    The whole response (not just the token) is returned so ``openssl ts -verify -in`` reads
    it as is. Only cheap checks are made here (status granted, nonce and imprint echoed);
    call :func:`verify_timestamp` before trusting the token.
    """
    query = make_query(data)
    req = urllib.request.Request(url, data=query, method="POST", headers={
        "Content-Type": QUERY_CONTENT_TYPE, "Accept": REPLY_CONTENT_TYPE})
    try:
        with _opener_for(url).open(req, timeout=timeout) as resp:
            body = resp.read(MAX_REPLY_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode(errors="replace").strip()
        raise TimestampError(f"TSA at {url} answered HTTP {exc.code} {exc.reason}: {detail}",
                             kind="tsa_unavailable", url=url, http_status=exc.code, body=detail) from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TimestampError(f"TSA at {url} is unreachable: {reason}",
                             kind="tsa_unavailable", url=url, error=repr(exc)) from exc
    if len(body) > MAX_REPLY_BYTES:
        raise TimestampError(f"TSA at {url} sent more than {MAX_REPLY_BYTES} bytes",
                             kind="tsa_bad_response", url=url)

    token = _parse(body)
    sent = tsp.TimeStampReq.load(query)
    if token.nonce != sent["nonce"].native:
        raise TimestampError("TSA reply does not echo our nonce (stale or replayed reply)",
                             kind="tsa_bad_response", url=url, sent_nonce=sent["nonce"].native, got_nonce=token.nonce)
    sent_imprint = sent["message_imprint"]
    if (token.imprint_algorithm, token.imprint) != (sent_imprint["hash_algorithm"]["algorithm"].native,
                                                    sent_imprint["hashed_message"].native):
        raise TimestampError("TSA reply stamps a different message imprint than we sent",
                             kind="tsa_bad_response", url=url, sent=sent_imprint["hashed_message"].native,
                             got=token.imprint)
    return body


def _parse(response_der: bytes) -> _Token:
    """Decode a TimeStampResp, refusing anything not granted or malformed. No checks of meaning."""
    try:
        resp = _TimeStampResp.load(response_der, strict=True)
        status = resp["status"]
        if status["status"].native not in ("granted", "granted_with_mods"):
            raise TimestampError(
                f"TSA refused the request: {status['status'].native}",
                kind="tsa_rejected", status=status["status"].native,
                status_string=status["status_string"].native, fail_info=status["fail_info"].native)
        token = resp["time_stamp_token"]
        if not isinstance(token, cms.ContentInfo):
            raise ValueError("status granted but no time-stamp token")
        if token["content_type"].native != "signed_data":
            raise ValueError(f"token content type is {token['content_type'].native}, not signed_data")
        signed_data = token["content"]
        encap = signed_data["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise ValueError(f"signed content type is {encap['content_type'].native}, not tst_info")
        tst_info = encap["content"].parsed
        if len(signed_data["signer_infos"]) != 1:
            raise ValueError(f"a time-stamp token has exactly one signer, not {len(signed_data['signer_infos'])}")
        signer_info = signed_data["signer_infos"][0]
        if not signer_info["signed_attrs"]:
            raise ValueError("token has no signed attributes")
        sig_alg = signer_info["signature_algorithm"]
        try:
            scheme = sig_alg.signature_algo
        except ValueError:
            scheme = sig_alg["algorithm"].dotted
        try:
            signature_hash: str | None = sig_alg.hash_algo
        except ValueError:  # bare rsaEncryption names no hash: the digestAlgorithm rules
            signature_hash = None
        # CMS signs the DER of the signed attributes as a universal SET (RFC 5652 5.4); taken
        # before any decoding below so it is exactly the bytes received.
        signed_attrs_der = signer_info["signed_attrs"].untag().dump()
        attrs: dict[str, list[Any]] = {}
        for attr in signer_info["signed_attrs"]:
            attrs.setdefault(attr["type"].native, []).extend(attr["values"].native)
        imprint = tst_info["message_imprint"]
        return _Token(
            imprint_algorithm=imprint["hash_algorithm"]["algorithm"].native,
            imprint=imprint["hashed_message"].native,
            gen_time=tst_info["gen_time"].native,
            serial_number=tst_info["serial_number"].native,
            policy=tst_info["policy"].dotted,
            nonce=tst_info["nonce"].native,
            tst_info_der=encap["content"].contents,
            digest_algorithm=signer_info["digest_algorithm"]["algorithm"].native,
            signature_scheme=scheme,
            signature_hash=signature_hash,
            signature=signer_info["signature"].native,
            signed_attrs_der=signed_attrs_der,
            signed_attrs=attrs,
            ess_cert_id=_ess_cert_id(attrs),
            signer_cert_der=_signer_cert(signed_data, signer_info),
        )
    except TimestampError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise TimestampError(f"not a valid RFC 3161 TimeStampResp: {exc}", kind="timestamp_malformed",
                             length=len(response_der)) from exc


def _gen_time(token: _Token) -> dt.datetime:
    value = token.gen_time
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise TimestampError("genTime is not an absolute UTC time", kind="timestamp_malformed",
                             gen_time=str(value))
    return value.astimezone(dt.timezone.utc)


def token_gen_time(response_der: bytes) -> dt.datetime:
    """genTime of a granted response WITHOUT verifying it: for ordering checks only."""
    return _gen_time(_parse(response_der))


def _single(attrs: dict[str, list[Any]], name: str) -> Any:
    """The single value of a signed attribute; CMS forbids duplicates, so they are an error."""
    values = attrs.get(name, [])
    if len(values) != 1:
        raise TimestampError(f"signed attribute {name} must occur exactly once with one value",
                             kind="timestamp_malformed", attribute=name, found=len(values))
    return values[0]


def _ess_cert_id(attrs: dict[str, list[Any]]) -> tuple[str, bytes]:
    """(hash algorithm, hash) of the signer cert from ESS signingCertificate(V2) (RFC 5816)."""
    if "signing_certificate_v2" in attrs:
        cert_id = _single(attrs, "signing_certificate_v2")["certs"][0]
        return cert_id["hash_algorithm"]["algorithm"], cert_id["cert_hash"]
    if "signing_certificate" in attrs:
        return "sha1", _single(attrs, "signing_certificate")["certs"][0]["cert_hash"]  # v1 is SHA-1 by definition
    raise TimestampError("token has no ESS signing-certificate attribute", kind="timestamp_malformed")


def _signer_cert(signed_data: cms.SignedData, signer_info: cms.SignerInfo) -> bytes | None:
    """DER of the certificate the SignerInfo's sid names, if the token carries it."""
    sid, certs = signer_info["sid"], signed_data["certificates"]
    if not isinstance(certs, cms.CertificateSet):  # absent: the query had certReq false
        return None
    for choice in certs:
        cert = choice.chosen
        if not isinstance(cert, asn1_x509.Certificate):
            continue
        if sid.name == "issuer_and_serial_number":
            if cert.issuer == sid.chosen["issuer"] and cert.serial_number == sid.chosen["serial_number"].native:
                return cert.dump()
        elif cert.key_identifier == sid.chosen.native:
            return cert.dump()
    return None


def _check_ess_binding(token: _Token, cert_der: bytes) -> None:
    """The ESS attribute pins the signer cert, so it cannot be swapped for another certificate
    with the same key (RFC 3161 section 2.4.2)."""
    algo, expected = token.ess_cert_id
    if algo not in ("sha1", *_HASHES):
        raise TimestampError(f"ESS certificate hash {algo} is not supported", kind="timestamp_malformed")
    computed = hashlib.new(algo, cert_der).digest()
    if computed != expected:
        raise TimestampError("ESS signing-certificate hash does not match the signer certificate",
                             kind="untrusted_tsa", expected=expected, computed=computed)


def _verify_signature(token: _Token, cert: x509.Certificate) -> None:
    digest_name = token.digest_algorithm
    if token.signature_hash not in (None, digest_name):
        raise TimestampError("signatureAlgorithm and digestAlgorithm disagree", kind="bad_signature",
                             signature_hash=token.signature_hash, digest_algorithm=digest_name)
    hash_alg = _HASHES[digest_name]()
    try:
        key, scheme = cert.public_key(), token.signature_scheme
    except (ValueError, crypto_exceptions.UnsupportedAlgorithm) as exc:  # found by tests/fuzz
        raise TimestampError(f"TSA certificate public key is unusable: {exc}", kind="bad_signature") from exc
    try:
        if isinstance(key, rsa.RSAPublicKey) and scheme == "rsassa_pkcs1v15":
            key.verify(token.signature, token.signed_attrs_der, padding.PKCS1v15(), hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey) and scheme == "ecdsa":
            key.verify(token.signature, token.signed_attrs_der, ec.ECDSA(hash_alg))
        else:
            raise TimestampError(f"unsupported signer: {type(key).__name__} with {scheme}",
                                 kind="bad_signature", key_type=type(key).__name__, scheme=scheme)
    except crypto_exceptions.InvalidSignature as exc:
        raise TimestampError("CMS signature over the signed attributes is invalid",
                             kind="bad_signature", signature=token.signature) from exc


def _load_anchors(ca_pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise ConfigError(f"the TSA CA is not a PEM certificate bundle: {exc}") from exc


def _check_chain(cert: x509.Certificate, anchors: list[x509.Certificate], gen_time: dt.datetime) -> None:
    """Signer cert must be issued directly by one of the CA certs and valid at genTime."""
    issuer = None
    for ca in anchors:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, crypto_exceptions.InvalidSignature):
            continue
        issuer = ca
        break
    if issuer is None:
        raise TimestampError("TSA certificate is not issued by the given CA", kind="untrusted_tsa",
                             tsa_subject=cert.subject.rfc4514_string(),
                             tsa_issuer=cert.issuer.rfc4514_string(),
                             ca_subjects=[ca.subject.rfc4514_string() for ca in anchors])
    for what, c in (("TSA certificate", cert), ("CA certificate", issuer)):
        if not c.not_valid_before_utc <= gen_time <= c.not_valid_after_utc:
            raise TimestampError(f"{what} is not valid at genTime", kind="untrusted_tsa",
                                 gen_time=gen_time.isoformat(),
                                 not_before=c.not_valid_before_utc.isoformat(),
                                 not_after=c.not_valid_after_utc.isoformat())


def _check_tsa_usage(cert: x509.Certificate) -> None:
    """RFC 3161 2.3: EKU must be exactly timeStamping and critical."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound as exc:
        raise TimestampError("TSA certificate has no extendedKeyUsage", kind="untrusted_tsa") from exc
    except (ValueError, x509.DuplicateExtension) as exc:
        raise TimestampError(f"TSA certificate extensions do not parse: {exc}", kind="timestamp_malformed") from exc
    if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampError("TSA certificate EKU must be exactly timeStamping and critical",
                             kind="untrusted_tsa", critical=eku.critical,
                             purposes=[oid.dotted_string for oid in eku.value])
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (ku.digital_signature or ku.content_commitment):
        raise TimestampError("TSA certificate keyUsage forbids signatures", kind="untrusted_tsa")


def verify_timestamp(response_der: bytes, data: bytes, ca_pem: bytes) -> TimestampInfo:
    """Verify offline that ``response_der`` is a granted token over ``data`` from a TSA
    certified by ``ca_pem`` (one or more PEM certificates); raise TimestampError otherwise.

    Checks: status granted; messageImprint == hash(data); content-type and messageDigest
    signed attributes match the encapsulated TSTInfo; the CMS signature (RSA PKCS#1 v1.5
    or ECDSA) verifies with the signer certificate; the ESS signing-certificate attribute
    pins that certificate; it is issued by the CA, valid at genTime, and has the critical
    timeStamping EKU. A CA that is not PEM raises ConfigError (a setup fault, not a bad token).
    """
    anchors = _load_anchors(ca_pem)
    token = _parse(response_der)

    if token.imprint_algorithm not in _HASHES:
        raise TimestampError(f"message imprint uses {token.imprint_algorithm}; accepted: {sorted(_HASHES)}",
                             kind="imprint_mismatch", hash_algorithm=token.imprint_algorithm)
    computed = hashlib.new(token.imprint_algorithm, data).digest()
    if computed != token.imprint:
        raise TimestampError("time-stamp token covers different data", kind="imprint_mismatch",
                             hash_algorithm=token.imprint_algorithm, expected=token.imprint, computed=computed)

    if token.digest_algorithm not in _HASHES:
        raise TimestampError(f"signer digest {token.digest_algorithm} is not accepted", kind="bad_signature",
                             digest_algorithm=token.digest_algorithm)
    if _single(token.signed_attrs, "content_type") != "tst_info":
        raise TimestampError("signed content-type attribute is not id-ct-TSTInfo", kind="bad_signature")
    signed_digest = _single(token.signed_attrs, "message_digest")
    content_digest = hashlib.new(token.digest_algorithm, token.tst_info_der).digest()
    if signed_digest != content_digest:
        raise TimestampError("signed messageDigest does not match the TSTInfo (token altered)",
                             kind="bad_signature", expected=signed_digest, computed=content_digest)

    if token.signer_cert_der is None:
        raise TimestampError("token does not carry the signer's certificate (query with certReq true)",
                             kind="timestamp_malformed")
    try:
        cert = x509.load_der_x509_certificate(token.signer_cert_der)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion: found by tests/fuzz
        raise TimestampError(f"signer certificate does not parse: {exc}", kind="timestamp_malformed") from exc
    _verify_signature(token, cert)
    _check_ess_binding(token, token.signer_cert_der)
    gen_time = _gen_time(token)
    _check_chain(cert, anchors, gen_time)
    _check_tsa_usage(cert)

    return TimestampInfo(
        gen_time=gen_time,
        serial_number=token.serial_number,
        policy=token.policy,
        hash_algorithm=token.imprint_algorithm,
        tsa_subject=cert.subject.rfc4514_string(),
    )
