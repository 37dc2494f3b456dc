"""What a verifier trusts (signer keys, the TSA CA, the approvers) and how patient it is:
found the same way by every verifier (workers, ``ledgerstream verify``, the index, the
benchmarks) as by the read tools, from HOME and the command line."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

from ledgerstream.core import mldsa, note
from ledgerstream.core.wire import avro_fast
from ledgerstream.core.errors import ConfigError, VerificationError
from ledgerstream.core.mldsa import PublicKey

@dataclass(frozen=True)
class CheckerConfig:
    """What a verifier trusts and how patient it is.

    ``link_grace_seconds`` (ledger time, from ``received_at``) and ``link_grace_entries``
    bound how long a pending link may wait for its target; a link dangles once every
    bound that is set has passed, so set one to None to use only the other.
    """

    trusted_keys: Mapping[str, PublicKey]
    tsa_ca: bytes | None = None
    approvers: Any = None  # ledgerstream.core.approvals.ApproverSet
    link_grace_seconds: float | None = 300.0
    link_grace_entries: int | None = 10_000
    clock_skew_seconds: float = 300.0
    origin: str | None = None
    #: the log's signed-note keys (its Ed25519 and ML-DSA-65 vkeys; docs/spec.md section 6)
    note_keys: tuple[note.Verifier, ...] = ()
    #: the witnesses' cosigner keys and how many of them make a checkpoint "witnessed"
    witnesses: tuple[note.Verifier, ...] = ()
    witness_quorum: int = 0

    def witnessed_size(self, latest: Mapping[str, int]) -> int:
        """From each witness's largest cosigned size, the largest size ``witness_quorum`` of them
        cosigned (a cosignature on size s covers every smaller checkpoint the verifier found
        consistent with it); 0 without a quorum."""
        sizes = sorted(latest.values(), reverse=True)
        return sizes[self.witness_quorum - 1] if 0 < self.witness_quorum <= len(sizes) else 0

    def __post_init__(self) -> None:
        if self.link_grace_seconds is None and self.link_grace_entries is None:
            raise ValueError("set link_grace_seconds, link_grace_entries or both")

    @classmethod
    def from_keys(cls, keys: Iterable[PublicKey], **options: Any) -> "CheckerConfig":
        return cls(trusted_keys={k.key_id: k for k in keys}, **options)

    @cached_property
    def encoded_key_ids(self) -> tuple[tuple[bytes, ...], tuple[PublicKey, ...]]:
        """The trusted key_ids as Avro writes them, and the keys in the same order (for
        :func:`raw_signature_check`)."""
        return (tuple(avro_fast.write_str(key_id) for key_id in self.trusted_keys),
                tuple(self.trusted_keys.values()))


class TrustedKeys:
    """Signer public keys by key_id, with where each came from (evidence for reports)."""

    def __init__(self) -> None:
        self.by_id: dict[str, mldsa.PublicKey] = {}
        self.sources: dict[str, str] = {}

    def add_pem(self, path: Path) -> None:
        try:
            key = mldsa.load_public_key(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read trusted key {path}: {exc.strerror or exc}") from exc
        self.by_id[key.key_id] = key
        self.sources.setdefault(key.key_id, str(path))

    def get(self, key_id: str) -> mldsa.PublicKey:
        try:
            return self.by_id[key_id]
        except KeyError:
            raise VerificationError(f"key_id {key_id[:16]} is not a trusted signer key", kind="unknown_key",
                                    key_id=key_id, trusted=sorted(self.by_id)) from None

    @staticmethod
    def home_paths(home: Path) -> list[Path]:
        """The signer keys HOME trusts by default: HOME/keys/signer.pub.pem and
        HOME/keys/trusted/*.pem, those present."""
        keys_dir = home / "keys"
        return [p for p in [keys_dir / "signer.pub.pem", *sorted((keys_dir / "trusted").glob("*.pem"))] if p.exists()]

    @classmethod
    def load(cls, home: Path, extra: Iterable[Path] = ()) -> TrustedKeys:
        """The keys of :meth:`home_paths`, and each ``extra`` PEM."""
        keys = cls()
        keys_dir = home / "keys"
        for path in cls.home_paths(home):
            keys.add_pem(path)
        for path in extra:
            keys.add_pem(Path(path))
        if not keys.by_id:
            raise ConfigError(f"no trusted signer keys: none in {keys_dir}/signer.pub.pem or "
                              f"{keys_dir}/trusted/*.pem; pass --trusted-key PEM")
        return keys


@dataclass(frozen=True)
class Witness:
    """One configured witness: its cosigner key and where its tlog-witness API listens."""

    verifier: note.Verifier
    url: str | None = None

    @property
    def name(self) -> str:
        return self.verifier.name


WITNESSES_FILE = "witnesses.json"


def load_witnesses(home: Path, explicit: Path | None = None) -> tuple[tuple[Witness, ...], int]:
    """The witnesses and their quorum k from ``explicit`` or HOME/witnesses.json
    (``{"quorum": k, "witnesses": [{"vkey": "...", "url": "http://..."}]}``); none if absent."""
    path = explicit or home / WITNESSES_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"witness file {explicit} does not exist") from None
        return (), 0
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read witness file {path}: {exc}") from exc
    try:
        witnesses = tuple(Witness(note.parse_vkey(w["vkey"]), w.get("url")) for w in data.get("witnesses", []))
        quorum = int(data.get("quorum", len(witnesses)))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"witness file {path}: {exc!r}") from None
    if not 0 <= quorum <= len(witnesses):
        raise ConfigError(f"witness file {path}: quorum {quorum} is not between 0 and {len(witnesses)}")
    if len({w.name for w in witnesses}) != len(witnesses):
        raise ConfigError(f"witness file {path}: two witnesses share a name")
    return witnesses, quorum


def load_note_keys(home: Path) -> tuple[note.Verifier, ...]:
    """The log's note vkeys: HOME/keys/signer.vkey and HOME/keys/trusted/*.vkey, if present."""
    keys_dir = home / "keys"
    out: list[note.Verifier] = []
    for path in [keys_dir / "signer.vkey", *sorted((keys_dir / "trusted").glob("*.vkey"))]:
        try:
            out += note.load_vkeys(path.read_text(), str(path))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return tuple(out)


@dataclass(frozen=True)
class NoteTrust:
    """The log's note keys, the witnesses and their quorum: what checkpoint notes are checked
    against (HOME/keys/*.vkey and HOME/witnesses.json)."""

    note_keys: tuple[note.Verifier, ...] = ()
    witnesses: tuple[note.Verifier, ...] = ()
    quorum: int = 0

    @classmethod
    def load(cls, home: Path, witnesses_path: Path | None = None) -> "NoteTrust":
        witnesses, quorum = load_witnesses(home, witnesses_path)
        return cls(load_note_keys(home), tuple(w.verifier for w in witnesses), quorum)

    def options(self) -> dict[str, Any]:
        """As :class:`CheckerConfig` keyword arguments."""
        return {"note_keys": self.note_keys, "witnesses": self.witnesses, "witness_quorum": self.quorum}


def tsa_ca(home: Path, explicit: Path | None) -> bytes | None:
    """The TSA CA bundle: --tsa-ca, else HOME/tsa/ca.pem (dev stack), else None."""
    path = explicit or home / "tsa" / "ca.pem"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"TSA CA {explicit} does not exist") from None
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read TSA CA {path}: {exc.strerror or exc}") from exc


POLICY_NAMES = ("policy.yaml", "policy.yml", "policy.json")


def find_policy(home: Path, explicit: Path | None = None) -> Path | None:
    """--policy, else HOME/policy.yaml|yml|json if one exists (its ``approvals`` section)."""
    if explicit is not None:
        if not explicit.exists():
            raise ConfigError(f"policy file {explicit} does not exist")
        return explicit
    return next((home / name for name in POLICY_NAMES if (home / name).exists()), None)


def load_approvers(home: Path, explicit: Path | None = None) -> Any:
    """The approver set (``core.approvals.ApproverSet``) of ``find_policy``'s file, or None."""
    policy_path = find_policy(home, explicit)
    if policy_path is None:
        return None
    from ledgerstream.producers.policy import Policy

    return Policy.from_file(policy_path).approvers


def checker_config(home: Path, *, trusted_keys: Iterable[Path] = (), tsa_ca_path: Path | None = None,
                   policy: Path | None = None, witnesses_path: Path | None = None, **options: Any) -> CheckerConfig:
    """Trusted keys (HOME/keys/signer.pub.pem, HOME/keys/trusted/*.pem, ``trusted_keys``),
    TSA CA (``tsa_ca_path`` or HOME/tsa/ca.pem), approvers (``find_policy``); ConfigError if
    no signer key is trusted at all."""
    keys = TrustedKeys.load(home, trusted_keys)
    approvers = load_approvers(home, policy)
    ca = tsa_ca(home, tsa_ca_path)
    if ca is not None:
        _check_ca(ca)
    return CheckerConfig(trusted_keys=dict(keys.by_id), tsa_ca=ca, approvers=approvers,
                         **NoteTrust.load(home, witnesses_path).options(), **options)


def _check_ca(ca_pem: bytes) -> None:
    """A broken CA file is a setup error, found at start rather than at the first token."""
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise ConfigError(f"the TSA CA is not a PEM certificate bundle: {exc}") from exc
