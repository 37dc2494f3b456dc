"""Field redaction: secrets are replaced before the payload is canonicalised and committed,
so they never leave the agent's process and never enter a hash either.

A path without a dot (``"api_key"``) redacts that key at any depth; a dotted path
(``"args.user.password"``) redacts exactly that place, and a ``*`` segment matches any
key. Lists are transparent: a path applies to every element of a list it meets.
"""
from __future__ import annotations

from typing import Any, Iterable

REDACTED = "[REDACTED]"


class Redactor:
    """A compiled set of redaction paths (empty: the payload is returned unchanged)."""

    def __init__(self, paths: Iterable[str] = ()) -> None:
        self.paths = tuple(dict.fromkeys(paths))
        for path in self.paths:
            if not isinstance(path, str) or not path or any(not seg for seg in path.split(".")):
                raise ValueError(f"bad redaction path {path!r}: use 'key' or dotted 'a.b.c'")
        self._anywhere = frozenset(p for p in self.paths if "." not in p)
        self._anchored = tuple(tuple(p.split(".")) for p in self.paths if "." in p)

    def __bool__(self) -> bool:
        return bool(self.paths)

    def __add__(self, other: "Redactor") -> "Redactor":
        return Redactor(self.paths + other.paths)

    def apply(self, value: Any) -> Any:
        """A redacted copy of ``value`` (the input is never modified)."""
        if not self.paths:
            return value
        return self._walk(value, self._anchored)

    def _walk(self, node: Any, anchored: tuple[tuple[str, ...], ...]) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, item in node.items():
                here = tuple(p for p in anchored if p[0] == "*" or p[0] == key)
                if key in self._anywhere or any(len(p) == 1 for p in here):
                    out[key] = REDACTED
                else:
                    out[key] = self._walk(item, tuple(p[1:] for p in here))
            return out
        if isinstance(node, (list, tuple)):
            return [self._walk(item, anchored) for item in node]
        return node
