"""SIEM exports of hostile identifiers (issue 19, item 4): NUL, ESC, CR/LF, '|', '=', '\\', ']'
and U+202E in agent ids and action types. Each line is read back by a reader nobody here wrote
where one exists (pycef, syslog-rfc5424-parser, json) or by the spec-based readers of
test_siem_formats; what the format can carry comes back exactly, the rest as visible escapes."""
from __future__ import annotations

import json
import re
import unicodedata

import pytest

from ledgerstream.tools.siem.formats import get_format
from test_siem_formats import SYSLOG, alert, cef_parse, entry, need, sd_values

pytestmark = pytest.mark.unit

HOSTILE = 'a\x00b\x1bc\r\nd|e=f\\g]h"i\u202ej'
#: HOSTILE as CEF can carry it: '|', '=', '\\' and the line break (as \n) come back exactly;
#: NUL, ESC and U+202E have no CEF escape and arrive as visible text (docs/siem.md)
CEF_EXT = 'a\\x00b\\x1bc\nd|e=f\\g]h"i\\u202ej'
CEF_HEADER = 'a\\x00b\\x1bc d|e=f\\g]h"i\\u202ej'   # header: no line breaks allowed, a space instead
SYSLOG_PARAM = 'a\\x00b\\x1bc d|e=f\\g]h"i\\u202ej'  # one line per message: a space for the break
INVISIBLE = {"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"}


def _no_invisible(line: str) -> None:
    bad = [f"U+{ord(c):04X}" for c in line if unicodedata.category(c) in INVISIBLE]
    assert not bad, bad


@pytest.mark.parametrize("field", ["agent_id", "action_type"])
def test_cef_spec_reader_gets_the_values_back(field: str) -> None:
    line = get_format("cef").render(entry(**{field: HOSTILE}))
    _no_invisible(line)
    header, ext = cef_parse(line)
    if field == "agent_id":
        assert ext["suser"] == CEF_EXT
    else:
        assert ext["act"] == CEF_EXT and header[3] == "entry:" + CEF_HEADER


def test_pycef_reads_a_hostile_agent_id() -> None:
    pycef = need("pycef")
    line = get_format("cef").render(entry(agent_id=HOSTILE))
    parsed = pycef.parse(line)  # pycef leaves escapes in place; undo them as the CEF spec says
    assert re.sub(r"\\([\\=])", r"\1", parsed["suser"]).replace("\\n", "\n") == CEF_EXT


def test_cef_alert_with_hostile_agent_id() -> None:
    line = get_format("cef").render(alert(agent_id=HOSTILE, detail=HOSTILE))
    _no_invisible(line)
    _, ext = cef_parse(line)
    assert ext["suser"] == CEF_EXT and ext["msg"] == CEF_EXT


@pytest.mark.parametrize("field,param", [("agent_id", "agent_id"), ("action_type", "action")])
def test_syslog_parser_reads_hostile_values(field: str, param: str) -> None:
    parser = need("syslog_rfc5424_parser")
    line = get_format("syslog").render(entry(**{field: HOSTILE}))
    _no_invisible(line)
    assert SYSLOG.match(line), line
    msg = parser.SyslogMessage.parse(line)
    assert sd_values(msg.sd)[param] == SYSLOG_PARAM
    assert "\\x1b" in msg.msg and "\\u202e" in msg.msg


@pytest.mark.parametrize("fmt", ["ocsf", "ecs"])
def test_json_formats_carry_the_exact_values(fmt: str) -> None:
    line = get_format(fmt).render(entry(agent_id=HOSTILE, action_type=HOSTILE))
    assert not any(ord(c) < 0x20 for c in line)  # JSON escapes C0 controls (RFC 8259 section 7)
    values = json.dumps(json.loads(line), ensure_ascii=False)
    assert json.dumps(HOSTILE, ensure_ascii=False)[1:-1] in values  # the original, exactly
