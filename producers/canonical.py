"""RFC 8785 payload bytes, fast for the payloads agents actually record.

``records.canonical_json`` (the rfc8785 package, pure Python) is the reference and handles
everything. For JSON made only of dicts with string keys below U+D800, lists, strings,
booleans, null and integers inside the 2**53 safe range, JCS output is exactly what
``records.jcs_without_floats`` (``json.dumps``, in C) writes: same escapes, and sorting by
UTF-16 code units equals sorting by code points for such keys. One walk over the value
decides; anything else (floats, big integers, other types) takes the reference path, which
also produces the error message. Tests compare both paths on random payloads.
"""
from __future__ import annotations

from typing import Any

from ledgerstream.core import records

_SAFE = 2**53
_MAX_DEPTH = 100
_SURROGATES = "\ud800"


def _plain(value: Any, depth: int) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_SAFE < value < _SAFE
    if depth > _MAX_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and max(key) >= _SURROGATES):
                return False
            leaf = type(item)  # strings, booleans and null inline: no call for the common leaves
            if not (leaf is str or leaf is bool or item is None) and not _plain(item, depth + 1):
                return False
        return True
    if kind is list:
        for item in value:
            leaf = type(item)
            if not (leaf is str or leaf is bool or item is None) and not _plain(item, depth + 1):
                return False
        return True
    return False


def canonical_payload(value: Any) -> bytes:
    """RFC 8785 bytes of ``value``; TypeError for anything RFC 8785 cannot represent."""
    if _plain(value, 0):
        try:
            return records.jcs_without_floats(value)
        except UnicodeEncodeError:  # lone surrogates: let the reference path explain
            pass
    try:
        return records.canonical_json(value)
    except ValueError as exc:
        raise TypeError(str(exc)) from None
