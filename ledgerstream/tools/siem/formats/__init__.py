"""SIEM output formats by name; ``get_format("ecs")`` etc."""
from __future__ import annotations

from ledgerstream.tools.siem.formats.cef import CefFormat
from ledgerstream.tools.siem.formats.ecs import EcsFormat
from ledgerstream.tools.siem.formats.interface import SiemFormat
from ledgerstream.tools.siem.formats.ocsf import OcsfFormat
from ledgerstream.tools.siem.formats.syslog import SyslogFormat

FORMATS: dict[str, type[SiemFormat]] = {f.name: f for f in (EcsFormat, CefFormat, OcsfFormat, SyslogFormat)}


def get_format(name: str) -> SiemFormat:
    try:
        return FORMATS[name]()
    except KeyError:
        raise ValueError(f"unknown SIEM format {name!r}; choose one of {', '.join(FORMATS)}") from None


__all__ = ["FORMATS", "SiemFormat", "get_format"]
