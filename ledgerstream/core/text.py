"""Visible escapes for untrusted text shown to people or written into line formats.

Ledger data is not trusted for display: an old entry (sequenced before identifiers were
checked, docs/spec.md "Identifiers") or a payload may hold ESC sequences, NUL, bidi
overrides or zero-width characters. Terminal output and the CEF/syslog exports write such
code points as visible escapes instead (docs/siem.md).
"""
from __future__ import annotations

import unicodedata

from ledgerstream.core.records import FORBIDDEN_ID_CATEGORIES


def escape_invisible(text: str, keep: str = "") -> str:
    """``text`` with every code point of :data:`records.FORBIDDEN_ID_CATEGORIES` (C0/C1
    controls, format characters such as U+202E and U+200B, U+2028/U+2029, surrogates,
    unassigned) except those in ``keep`` written as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``."""
    if text.isprintable():  # False for every category escaped here: the common case is free
        return text
    return "".join(_escape(ch) if ch not in keep and unicodedata.category(ch) in FORBIDDEN_ID_CATEGORIES else ch
                   for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
