"""RFC 5424 syslog messages (docs/siem.md, "syslog").

``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ELEMENT] MSG``: facility 13 (log
audit), severity from the event, MSGID ``ENTRY`` or ``ALERT``, one SD-ELEMENT
``[ledgerstream@32473 ...]`` carrying the ledger fields. PARAM-VALUEs escape ``"``, ``\\``
and ``]`` with a backslash (RFC 5424 section 6.3.3). Line breaks become spaces so that
each message stays one line in files and in non-transparent framing. Other control and
invisible characters (NUL, ESC, U+202E, U+200B...) are written as visible ``\\xNN`` /
``\\uNNNN`` text (core/text.py) in PARAM-VALUEs (whose backslash is then escaped) and in MSG.

32473 is the IANA enterprise number reserved for documentation (RFC 5612); set
``LEDGERSTREAM_SYSLOG_SD_ID`` (``name@<your PEN>``) to use your organisation's own.
"""
from __future__ import annotations

import os
import re
import socket
from functools import cache

from ledgerstream.core.text import escape_invisible
from ledgerstream.tools.siem.events import AlertEvent, EntryEvent, Event, iso
from ledgerstream.tools.siem.formats.interface import SiemFormat

FACILITY_LOG_AUDIT = 13
APP_NAME = "ledgerstream"
DEFAULT_SD_ID = "ledgerstream@32473"
#: alert severity -> RFC 5424 severity (2 critical, 3 error, 4 warning, 5 notice, 6 informational)
_ALERT_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
_SD_NAME = re.compile(r'^[!-~]{1,32}$')
_NOT_PRINTUSASCII = re.compile(r"[^!-~]")


def _header_field(value: str, limit: int) -> str:
    """A header field: PRINTUSASCII only, bounded, NILVALUE when empty."""
    cleaned = _NOT_PRINTUSASCII.sub("_", value)[:limit]
    return cleaned or "-"


@cache
def _host_and_procid() -> tuple[str, str]:
    return _header_field(socket.getfqdn() or socket.gethostname(), 255), str(os.getpid())


@cache
def sd_id() -> str:
    value = os.environ.get("LEDGERSTREAM_SYSLOG_SD_ID", DEFAULT_SD_ID)
    if not _SD_NAME.match(value) or any(c in value for c in '= ]"'):
        raise ValueError(f"LEDGERSTREAM_SYSLOG_SD_ID {value!r} is not a valid SD-ID (RFC 5424 section 6.3.2)")
    return value


def escape_param(value: str) -> str:
    value = escape_invisible(value, keep="\r\n").replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return value.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def _oneline(text: str) -> str:
    return escape_invisible(text, keep="\r\n").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def message(severity: int, timestamp_us: int, msgid: str, params: list[tuple[str, object]], msg: str) -> str:
    host, procid = _host_and_procid()
    pri = FACILITY_LOG_AUDIT * 8 + severity
    sd_params = "".join(f' {name}="{escape_param(str(value))}"' for name, value in params
                        if value is not None and value != "")
    return f"<{pri}>1 {iso(timestamp_us)} {host} {APP_NAME} {procid} {msgid} [{sd_id()}{sd_params}] {_oneline(msg)}"


def entry_params(e: EntryEvent) -> list[tuple[str, object]]:
    return [("seq", e.seq), ("agent_id", e.agent_id), ("action", e.action_type), ("event_id", e.event_id),
            ("session_id", e.session_id), ("agent_seq", e.agent_seq), ("entry_hash", e.entry_hash),
            ("prev_hash", e.prev_hash), ("payload_hash", e.payload_hash), ("decision", e.policy_decision),
            ("key_id", e.key_id), ("offset", e.origin.offset), ("authenticity", e.authenticity),
            ("authenticity_reason", e.authenticity_reason)]


def alert_params(a: AlertEvent) -> list[tuple[str, object]]:
    return [("alert_id", a.alert_id), ("kind", a.kind), ("severity", a.severity), ("seq_from", a.seq_from),
            ("seq_to", a.seq_to), ("agent_id", a.agent_id), ("verifier_id", a.verifier_id),
            ("offset", a.origin.offset), *authenticity_params(a)]


def authenticity_params(a: AlertEvent) -> list[tuple[str, object]]:
    """Whether a trusted verifier key signed the alert (docs/spec.md section 10)."""
    return [("authenticity", a.authenticity), ("forged", "true" if a.forged else "false"),
            ("authenticity_reason", a.authenticity_reason), ("key_id", a.key_id)]


def envelope(event: Event, msg: str) -> str:
    """Wrap another format's line (CEF, JSON) in an RFC 5424 header for a syslog sink."""
    if isinstance(event, EntryEvent):
        return message(5 if event.denied else 6, event.received_at, "ENTRY",
                       [("seq", event.seq), ("agent_id", event.agent_id)], msg)
    return message(_ALERT_SEVERITY.get(event.severity, 4), event.time, "ALERT",
                   [("kind", event.kind), ("alert_id", event.alert_id), ("authenticity", event.authenticity),
                    ("forged", "true" if event.forged else "false")], msg)


class SyslogFormat(SiemFormat):
    name = "syslog"

    def entry(self, e: EntryEvent) -> str:
        return message(5 if e.denied else 6, e.received_at, "ENTRY", entry_params(e),
                       f"agent {e.agent_id} {e.action_type} (ledger seq {e.seq})")

    def alert(self, a: AlertEvent) -> str:
        return message(_ALERT_SEVERITY.get(a.severity, 4), a.time, "ALERT", alert_params(a),
                       f"{a.mark}{a.kind}: {a.detail}")
