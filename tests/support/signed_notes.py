"""Checkpoint notes as docs/spec.md section 6 and c2sp.org/signed-note spell them out, built
here by hand (an oracle independent of ledgerstream/core/note.py)."""
from __future__ import annotations

import base64
import hashlib

MLDSA65_TYPE = b"\xff" + b"ledgerstream/ml-dsa-65"


def key_id(name: str, type_bytes: bytes, public: bytes) -> bytes:
    """c2sp.org/signed-note: SHA-256(name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + type_bytes + public).digest()[:4]


def line(name: str, kid: bytes, signature: bytes) -> bytes:
    return f"\u2014 {name} {base64.b64encode(kid + signature).decode()}\n".encode()


def mldsa_checkpoint_note(body: bytes, origin: str, public: bytes, signature: bytes, before: bytes = b"",
                          after: bytes = b"") -> bytes:
    """Body, blank line, ``before`` lines, the ML-DSA-65 line, ``after`` lines."""
    return body + b"\n" + before + line(origin, key_id(origin, MLDSA65_TYPE, public), signature) + after
