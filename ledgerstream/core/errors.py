"""One flat exception family for ledgerstream.

Verification never returns a bare bool: it raises a subclass of ``VerificationError``
that carries the evidence (what was expected, what was computed) and a readable text.
"""
from __future__ import annotations

from typing import Any


class LedgerstreamError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(LedgerstreamError):
    """The environment or the configuration is unusable (missing Java, bad option, ...)."""


class DecodeError(LedgerstreamError):
    """Bytes that are not a valid record of a known schema (corrupt, unknown, truncated)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnsupportedAlgorithm(LedgerstreamError):
    """A crypto backend is not available on this machine."""


class VerificationError(LedgerstreamError):
    """A signature, hash, proof or token did not verify.

    ``kind`` is a short machine-readable code; ``evidence`` holds the values compared.
    """

    kind = "verification_failed"

    def __init__(self, message: str, *, kind: str | None = None, **evidence: Any) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.evidence = evidence

    def diagnostics(self) -> str:
        lines = [f"{self.kind}: {self}"]
        for key, value in self.evidence.items():
            if isinstance(value, (bytes, bytearray)):
                value = bytes(value).hex()
            lines.append(f"  {key}: {value}")
        return "\n".join(lines)


class InvalidSignature(VerificationError):
    kind = "bad_signature"


class ProofError(VerificationError):
    """An inclusion or consistency proof is malformed or does not reproduce the root."""

    kind = "proof_invalid"


class RootMismatch(ProofError):
    kind = "root_mismatch"


class TimestampError(VerificationError):
    kind = "timestamp_invalid"
