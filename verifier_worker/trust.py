"""What a verifier trusts: signer keys, the TSA CA and the approvers, found the same way by
every verifier (workers, ``ledgerstream verify``, the benchmark) as by the replay tools."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from ledgerstream.core.errors import ConfigError
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.tools.replay import TrustedKeys, tsa_ca

POLICY_NAMES = ("policy.yaml", "policy.yml", "policy.json")


def find_policy(home: Path, explicit: Path | None = None) -> Path | None:
    """--policy, else HOME/policy.yaml|yml|json if one exists (its ``approvals`` section)."""
    if explicit is not None:
        if not explicit.exists():
            raise ConfigError(f"policy file {explicit} does not exist")
        return explicit
    return next((home / name for name in POLICY_NAMES if (home / name).exists()), None)


def checker_config(home: Path, *, trusted_keys: Iterable[Path] = (), tsa_ca_path: Path | None = None,
                   policy: Path | None = None, **options: Any) -> CheckerConfig:
    """Trusted keys (HOME/keys/signer.pub.pem, HOME/keys/trusted/*.pem, ``trusted_keys``),
    TSA CA (``tsa_ca_path`` or HOME/tsa/ca.pem), approvers (``find_policy``); ConfigError if
    no signer key is trusted at all."""
    keys = TrustedKeys.load(home, trusted_keys)
    approvers = None
    policy_path = find_policy(home, policy)
    if policy_path is not None:
        from ledgerstream.producers.policy import Policy

        approvers = Policy.from_file(policy_path).approvers
    ca = tsa_ca(home, tsa_ca_path)
    if ca is not None:
        _check_ca(ca)
    return CheckerConfig(trusted_keys=dict(keys.by_id), tsa_ca=ca, approvers=approvers, **options)


def _check_ca(ca_pem: bytes) -> None:
    """A broken CA file is a setup error, found at start rather than at the first token."""
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise ConfigError(f"the TSA CA is not a PEM certificate bundle: {exc}") from exc
