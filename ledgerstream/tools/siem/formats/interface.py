"""The one small interface every SIEM format implements."""
from __future__ import annotations

import abc
import json
from typing import Any, ClassVar

from ledgerstream.tools.siem.events import AlertEvent, EntryEvent, Event


class SiemFormat(abc.ABC):
    """Renders one event as one line of text (no line breaks inside)."""

    #: the --format name
    name: ClassVar[str]
    #: Content-Type of a batch of lines, for HTTP sinks
    media_type: ClassVar[str] = "text/plain; charset=utf-8"

    @abc.abstractmethod
    def entry(self, event: EntryEvent) -> str:
        """A ledger entry (an agent action)."""

    @abc.abstractmethod
    def alert(self, event: AlertEvent) -> str:
        """A verifier alert."""

    def render(self, event: Event) -> str:
        return self.entry(event) if isinstance(event, EntryEvent) else self.alert(event)


def json_line(doc: dict[str, Any]) -> str:
    """Compact JSON on one line, without null or empty fields (SIEM schemas omit unknowns)."""
    return json.dumps(_prune(doc), ensure_ascii=False, separators=(",", ":"))


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value if v is not None]
    return value
