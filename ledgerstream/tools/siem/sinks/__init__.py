"""SIEM sinks by ``--output`` value: ``-``, a file path, ``syslog+tcp://HOST:PORT``, ``https://URL``."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from ledgerstream.tools.siem.sinks.http import HttpSink
from ledgerstream.tools.siem.sinks.interface import Sink, SinkError
from ledgerstream.tools.siem.sinks.stream import FileSink, StdoutSink
from ledgerstream.tools.siem.sinks.syslog_tcp import SyslogTcpSink


def open_sink(output: str, *, media_type: str, headers: dict[str, str] | None = None) -> Sink:
    """The sink an ``--output`` value names; ValueError with the accepted forms otherwise."""
    if output == "-":
        return StdoutSink()
    if "://" not in output:
        return FileSink(Path(output))
    parts = urlsplit(output)
    if parts.scheme == "syslog+tcp":
        if not parts.hostname or parts.port is None or parts.path not in ("", "/"):
            raise ValueError(f"bad syslog URL {output!r}: expected syslog+tcp://HOST:PORT")
        return SyslogTcpSink(parts.hostname, parts.port)
    if parts.scheme in ("https", "http"):
        if not parts.hostname:
            raise ValueError(f"bad collector URL {output!r}")
        return HttpSink(output, media_type, headers)
    raise ValueError(f"unsupported output {output!r}: use -, a file path, syslog+tcp://HOST:PORT or https://URL")


__all__ = ["Sink", "SinkError", "open_sink"]
