"""The one small interface every SIEM sink implements."""
from __future__ import annotations

import abc
from typing import ClassVar


class SinkError(Exception):
    """A write was not acknowledged. ``retriable`` is False when retrying cannot help."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class Sink(abc.ABC):
    """Delivers lines and returns only once the destination acknowledged all of them.

    ``write`` either returns (every line delivered: flushed, fsynced, ACKed) or raises
    :class:`SinkError`; the exporter commits Kafka offsets only after it returned. A sink
    reconnects by itself on the next ``write`` after a failure.
    """

    #: wrap non-syslog formats in an RFC 5424 header before writing
    wants_syslog_header: ClassVar[bool] = False

    @abc.abstractmethod
    def write(self, lines: list[str]) -> None:
        """Deliver ``lines`` (no trailing newlines) or raise SinkError."""

    def close(self) -> None:
        """Release connections and files."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the lines go, for messages."""
