"""Signed alerts: what a verifier signs, and how a reader tells a genuine alert from a forged one.

Anyone who can write to the ``alerts`` topic can write an ``Alert`` record, so every verifier
signs each alert it publishes with its own ML-DSA-65 key and readers (``ledgerstream alerts``,
the dashboard, the SIEM export) check it against the verifier keys they trust
(docs/spec.md, section 10). The byte-exact signing input is built here and nowhere else:

    message   = TAG_ALERT_SIGNATURE || JCS(alert_signing_view(alert))
    signature = ML-DSA-65.Sign(sk, message)            (FIPS 204, pure, empty context)
    key_id    = hex(SHA-256(raw 1952-byte public key))  (the signer's key-id rule, spec section 8)

Verdicts (:func:`check_alert`): ``verified`` (signed by the trusted key of the verifier the
alert names), ``unsigned`` (no signature; every genuine verifier signs, so this is not
trustworthy either) and ``forged`` (a signature that does not hold: unknown key, a key of
another verifier, a bad signature, an alert whose signing input cannot be built).

Trust comes from configuration (:func:`trusted_verifier_keys`): ``--trusted-verifier-key``
options, else ``$LEDGERSTREAM_VERIFIER_KEYS``, else the dev stack's
``HOME/keys/verifier-*.pub.pem``. A key's verifier id comes from its file name
(``verifier-<id>.pub.pem``) or is given as ``<id>=PATH``.
"""
from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledgerstream.core import mldsa
from ledgerstream.core.errors import ConfigError, VerificationError
from ledgerstream.core.records import canonical_json

TAG_ALERT_SIGNATURE = b"ledgerstream/v1/alert-signature\x00"
#: os.pathsep-separated public key files (each ``PATH`` or ``ID=PATH``) readers trust
ENV_VERIFIER_KEYS = "LEDGERSTREAM_VERIFIER_KEYS"
#: the same rule as verifier_worker.settings.ID_RE (a verifier id names files and groups)
VERIFIER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PUBLIC_NAME = re.compile(r"^verifier-([A-Za-z0-9_.-]{1,64})\.pub\.pem$")
_ID_PREFIX = re.compile(r"^([A-Za-z0-9_.-]{1,64})=(.+)$", re.S)


class Authenticity(str, enum.Enum):
    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    FORGED = "forged"


@dataclass(frozen=True)
class AlertAuthenticity:
    """The verdict on one alert, with a short machine-readable ``reason``:
    ``signed`` (verified), ``no_signature`` (unsigned), ``no_key_id``, ``unknown_key``,
    ``wrong_verifier``, ``malformed`` or ``bad_signature`` (forged)."""

    verdict: Authenticity
    reason: str
    key_id: str | None = None
    detail: str = ""

    @property
    def forged(self) -> bool:
        """True unless verified: an unsigned alert cannot come from a genuine verifier either."""
        return self.verdict is not Authenticity.VERIFIED

    def fields(self) -> dict[str, Any]:
        """What readers add to an alert's JSON: ``authenticity``, ``forged`` and the reason."""
        return {"authenticity": self.verdict.value, "forged": self.forged, "authenticity_reason": self.reason}


@dataclass(frozen=True)
class VerifierKey:
    """A trusted verifier public key and the one verifier id it may sign for."""

    verifier_id: str
    public_key: mldsa.PublicKey
    source: str = ""

    @property
    def key_id(self) -> str:
        return self.public_key.key_id


TrustedVerifiers = Mapping[str, VerifierKey]  # key_id -> key


# --- the signing input ---------------------------------------------------------------------------

def alert_signing_view(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object whose JCS bytes are signed: every Alert field except ``signature``,
    each key always present (``null`` where the record has null). A fixed list, so that
    fields a later schema adds (resolved to their defaults) never change old messages."""
    return {
        "alert_id": alert["alert_id"],
        "kind": alert["kind"],
        "severity": alert["severity"],
        "seq_from": alert.get("seq_from"),
        "seq_to": alert.get("seq_to"),
        "agent_id": alert.get("agent_id"),
        "detail": alert["detail"],
        "evidence": dict(alert.get("evidence") or {}),
        "verifier_id": alert["verifier_id"],
        "time": alert["time"],
        "key_id": alert.get("key_id"),
    }


def alert_signing_input(alert: Mapping[str, Any]) -> bytes:
    """TAG_ALERT_SIGNATURE || JCS(alert_signing_view(alert)): the exact bytes ML-DSA-65 signs.
    ValueError/TypeError when the alert holds values JCS refuses (integers beyond 2**53)."""
    return TAG_ALERT_SIGNATURE + canonical_json(alert_signing_view(alert))


def sign_alert(alert: Mapping[str, Any], key: mldsa.PrivateKey) -> dict[str, Any]:
    """A copy of ``alert`` with ``key_id`` (of ``key``) and ``signature`` set."""
    signed = {**alert, "key_id": key.public_key().key_id, "signature": None}
    signed["signature"] = key.sign(alert_signing_input(signed))
    return signed


def check_alert(alert: Mapping[str, Any], trusted: TrustedVerifiers) -> AlertAuthenticity:
    """The authenticity of a decoded alert under the ``trusted`` verifier keys (by key_id)."""
    signature, key_id = alert.get("signature"), alert.get("key_id")
    if signature is None:
        return AlertAuthenticity(Authenticity.UNSIGNED, "no_signature", key_id, "the alert carries no signature")
    if not key_id:
        return AlertAuthenticity(Authenticity.FORGED, "no_key_id", None, "a signature without a key_id")
    entry = trusted.get(key_id)
    if entry is None:
        return AlertAuthenticity(Authenticity.FORGED, "unknown_key", key_id,
                                 f"key {str(key_id)[:16]} is not a trusted verifier key")
    if entry.verifier_id != alert.get("verifier_id"):
        return AlertAuthenticity(Authenticity.FORGED, "wrong_verifier", key_id,
                                 f"key {key_id[:16]} belongs to verifier {entry.verifier_id}, "
                                 f"not to {alert.get('verifier_id')}")
    try:
        message = alert_signing_input(alert)
    except (KeyError, TypeError, ValueError) as exc:
        return AlertAuthenticity(Authenticity.FORGED, "malformed", key_id, f"no signing input: {exc}")
    try:
        entry.public_key.verify(bytes(signature), message)
    except VerificationError:
        return AlertAuthenticity(Authenticity.FORGED, "bad_signature", key_id,
                                 f"the ML-DSA-65 signature does not verify under key {key_id[:16]}")
    return AlertAuthenticity(Authenticity.VERIFIED, "signed", key_id,
                             f"signed by verifier {entry.verifier_id} (key {key_id[:16]})")


# --- key files ---------------------------------------------------------------------------------

def verifier_key_path(home: Path, verifier_id: str) -> Path:
    """Where the dev stack keeps verifier ``verifier_id``'s private key (PKCS#8 PEM, 0600)."""
    return Path(home) / "keys" / f"verifier-{verifier_id}.pem"


def verifier_public_key_path(home: Path, verifier_id: str) -> Path:
    return Path(home) / "keys" / f"verifier-{verifier_id}.pub.pem"


def load_alert_key(path: Path, verifier_id: str) -> mldsa.PrivateKey:
    """The verifier's signing key, or ConfigError saying how to get one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"verifier {verifier_id} signs every alert it publishes and has no key: {path} does not exist. "
            f"Create one with 'ledgerstream keys generate --out {path}' (keep it 0600) or pass --alert-key PATH; "
            f"readers must trust its public half (--trusted-verifier-key {verifier_id}=PUBLIC.pem or "
            f"${ENV_VERIFIER_KEYS})")
    try:
        return mldsa.load_private_key(path)
    except ConfigError as exc:
        raise ConfigError(f"verifier {verifier_id}: unusable alert signing key: {exc}") from exc


def _parse_spec(spec: str | os.PathLike[str]) -> tuple[str, Path]:
    """``ID=PATH`` or a ``verifier-<ID>.pub.pem`` PATH -> (verifier id, path)."""
    text = os.fspath(spec)
    match = _ID_PREFIX.match(text)
    if match:
        return match.group(1), Path(match.group(2))
    path = Path(text)
    named = _PUBLIC_NAME.match(path.name)
    if not named:
        raise ConfigError(f"cannot tell which verifier the key {text} belongs to: name the file "
                          "verifier-<id>.pub.pem or give it as <id>=PATH")
    return named.group(1), path


#: the verifier id under which the signer publishes the alerts it raises itself
SIGNER_VERIFIER_ID = "signer"


def load_verifier_keys(specs: Iterable[str | os.PathLike[str]]) -> dict[str, VerifierKey]:
    """Public keys by key_id from ``ID=PATH`` / ``verifier-<ID>.pub.pem`` specs; ConfigError
    for an unreadable file, a non-key, or one key given for two verifiers."""
    keys: dict[str, VerifierKey] = {}
    for spec in specs:
        verifier_id, path = _parse_spec(spec)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read trusted verifier key {path}: {exc.strerror or exc}") from exc
        try:
            pub = mldsa.load_public_key(data)
        except ConfigError as exc:
            raise ConfigError(f"trusted verifier key {path}: {exc}") from exc
        known = keys.get(pub.key_id)
        if known is not None and known.verifier_id != verifier_id:
            raise ConfigError(f"the key in {path} is given for verifier {verifier_id} and for "
                              f"{known.verifier_id} ({known.source}); a key belongs to one verifier")
        keys[pub.key_id] = VerifierKey(verifier_id, pub, str(path))
    return keys


def trusted_verifier_keys(home: Path | None, explicit: Iterable[str | os.PathLike[str]] = (),
                          environ: Mapping[str, str] | None = None) -> dict[str, VerifierKey]:
    """The verifier keys readers trust, from the first source that names any:
    ``explicit`` (``--trusted-verifier-key``), ``$LEDGERSTREAM_VERIFIER_KEYS`` (os.pathsep-separated),
    ``HOME/keys/verifier-*.pub.pem`` (the dev stack's) with ``HOME/keys/signer.pub.pem`` as
    verifier ``signer``. Empty when none: every alert is then
    unsigned or forged."""
    explicit = list(explicit)
    if explicit:
        return load_verifier_keys(explicit)
    env = (os.environ if environ is None else environ).get(ENV_VERIFIER_KEYS, "")
    listed = [part for part in env.split(os.pathsep) if part.strip()]
    if listed:
        return load_verifier_keys(listed)
    if home is None:
        return {}
    keys_dir = Path(home) / "keys"
    specs: list[str | Path] = sorted(keys_dir.glob("verifier-*.pub.pem"))
    if (keys_dir / "signer.pub.pem").exists():  # the signer's own alerts (snapshot_rejected)
        specs.append(f"{SIGNER_VERIFIER_ID}={keys_dir / 'signer.pub.pem'}")
    return load_verifier_keys(specs)


def describe_trust(trusted: TrustedVerifiers) -> str:
    """``v1 (1a2b3c4d5e6f7081), v2 (...)`` or ``none``, for messages."""
    return ", ".join(f"{k.verifier_id} ({k.key_id[:16]})" for k in sorted(trusted.values(),
                                                                      key=lambda k: k.verifier_id)) or "none"
