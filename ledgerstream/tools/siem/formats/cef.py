"""ArcSight Common Event Format (CEF) 0 lines (docs/siem.md, "CEF").

``CEF:0|Vendor|Product|Version|Signature ID|Name|Severity|Extension``. Escaping follows the
CEF specification: in the header ``\\`` and ``|`` are backslash-escaped (line breaks are not
allowed there and become spaces); in extension values ``\\`` and ``=`` are backslash-escaped
and line breaks are written as ``\\n`` / ``\\r``. Extension keys are the CEF dictionary's
names, plus ``csN``/``cnN`` custom fields with their ``...Label`` keys. CEF has no escape for
other control or invisible characters (NUL, ESC, U+202E, U+200B...): they are first written
as visible ``\\xNN`` / ``\\uNNNN`` text (core/text.py), whose backslash is then escaped as above.
"""
from __future__ import annotations

from ledgerstream.core.text import escape_invisible
from ledgerstream.tools.siem.events import AlertEvent, EntryEvent, millis, product_version
from ledgerstream.tools.siem.formats.ecs import SEVERITY_SCORE
from ledgerstream.tools.siem.formats.interface import SiemFormat

VENDOR = PRODUCT = "ledgerstream"
#: CEF caps the header Name field at 512 characters
MAX_NAME = 512


def escape_header(value: str) -> str:
    value = escape_invisible(value, keep="\r\n").replace("\\", "\\\\").replace("|", "\\|")
    return value.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def escape_extension(value: str) -> str:
    value = escape_invisible(value, keep="\r\n").replace("\\", "\\\\").replace("=", "\\=")
    return value.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def line(signature_id: str, name: str, severity: int, extension: list[tuple[str, object]]) -> str:
    header = [VENDOR, PRODUCT, product_version(), signature_id, name[:MAX_NAME], str(severity)]
    ext = " ".join(f"{key}={escape_extension(str(value))}" for key, value in extension
                   if value is not None and value != "")
    return "|".join(["CEF:0", *(escape_header(h) for h in header)]) + "|" + ext


def _custom(pairs: list[tuple[str, str, object]]) -> list[tuple[str, object]]:
    """csN/cnN fields with their labels: [(field, label, value)] -> flat key/value pairs."""
    out: list[tuple[str, object]] = []
    for key, label, value in pairs:
        if value is not None and value != "":
            out += [(key, value), (f"{key}Label", label)]
    return out


class CefFormat(SiemFormat):
    name = "cef"

    def entry(self, e: EntryEvent) -> str:
        ext: list[tuple[str, object]] = [
            ("rt", millis(e.received_at)), ("start", millis(e.occurred_at)),
            ("cat", "ledger/entry"), ("act", e.action_type), ("externalId", e.event_id),
            ("suser", e.agent_id), ("shost", e.producer_host), ("spid", e.producer_pid),
            ("outcome", "failure" if e.denied else "unknown"), ("reason", e.policy_reason),
            ("msg", f"agent {e.agent_id} {e.action_type} (ledger seq {e.seq})"),
        ]
        ext += _custom([
            ("cn1", "seq", e.seq), ("cn2", "agentSeq", e.agent_seq), ("cn3", "kafkaOffset", e.origin.offset),
            ("cs1", "entryHash", e.entry_hash), ("cs2", "prevHash", e.prev_hash),
            ("cs3", "sessionId", e.session_id), ("cs4", "keyId", e.key_id),
            ("cs5", "payloadHash", e.payload_hash), ("cs6", "policyDecision", e.policy_decision),
        ])
        ext += [("ledgerstreamAuthenticity", e.authenticity)]  # verified | unsigned | forged | unchecked
        forged = e.authenticity == "forged"
        severity = 8 if forged else 5 if e.denied else 1
        return line(f"entry:{e.action_type}", ("[FORGED] " if forged else "") + f"Agent action {e.action_type}",
                    severity, ext)

    def alert(self, a: AlertEvent) -> str:
        ext: list[tuple[str, object]] = [
            ("rt", millis(a.time)), ("cat", "ledger/alert"), ("act", a.kind), ("externalId", a.alert_id),
            ("suser", a.agent_id), ("dvchost", a.verifier_id), ("msg", a.detail),
        ]
        ext += _custom([
            ("cn1", "seqFrom", a.seq_from), ("cn2", "seqTo", a.seq_to), ("cn3", "kafkaOffset", a.origin.offset),
            ("cs1", "verifierId", a.verifier_id), ("cs2", "severity", a.severity),
            ("cs3", "evidence", ";".join(f"{k}:{v}" for k, v in sorted(a.evidence.items()))),
            # is it signed by a trusted verifier key (verified | unsigned | forged; docs/spec.md section 10)
            ("cs4", "authenticity", a.authenticity), ("cs5", "authenticityReason", a.authenticity_reason),
            ("cs6", "keyId", a.key_id),
        ])
        return line(f"alert:{a.kind}", a.mark + (a.detail.splitlines()[0] if a.detail else a.kind),
                    SEVERITY_SCORE.get(a.severity, 5), ext)
