"""Each SIEM format against its published rules.

- CEF: a strict parser written from the ArcSight CEF specification (header and extension
  escaping, round trip of every value), plus ``pycef`` for the plain lines it can read.
- RFC 5424 syslog: ``syslog-rfc5424-parser`` (a lark grammar of the RFC's ABNF) and a
  strict regex of the ABNF written here, with PARAM-VALUE escaping round-tripped.
- OCSF 1.3.0: the JSON Schemas that ``ocsf-json-schema`` generates from the published
  OCSF schema (additionalProperties false, enums), validated with ``jsonschema``.
- ECS 9.0: every field must be an ECS field of the right type (table below, from the ECS
  field reference) or in a documented custom namespace; categorization values must be
  the allowed ones for the category.
"""
from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import re
from typing import Any

import pytest

from ledgerstream.core.wire import codec
from ledgerstream.tools.siem.events import AlertEvent, EntryEvent, Link, Origin, decode_event, operation_of
from ledgerstream.tools.siem.formats import FORMATS, get_format
from ledgerstream.tools.siem.formats.syslog import envelope
from tests.support.actions import make_action

pytestmark = pytest.mark.unit

NASTY = 'pipe | back\\slash = equals "quote" ]bracket\nnew line\r\ncarriage é'


def need(module: str) -> Any:
    """Import a checker package; missing is a skip locally and a failure under CI."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{module} is required under CI (scripts/install_browser.sh installs it)")
        pytest.skip(f"{module} is not installed (scripts/install_browser.sh)")


def entry(**overrides: Any) -> EntryEvent:
    values: dict[str, Any] = dict(
        origin=Origin("ledgerstream.entries", 0, 41), seq=40, entry_hash="ab" * 32, prev_hash="cd" * 32,
        agent_id="planner", agent_seq=7, agent_prev_hash="ef" * 32, event_id="0190c0de-0000-7000-8000-000000000001",
        session_id="sess-1", action_type="data:delete:users", occurred_at=1_764_000_000_123_456,
        received_at=1_764_000_000_223_456, payload_hash="12" * 32, payload_erased=False,
        policy_decision="allow", policy_rule="data:*", policy_reason=None, approvals=0,
        links=(Link("researcher", "0190c0de-0000-7000-8000-000000000000", "resolved", 39),),
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7", producer_host="agent-host-1",
        producer_pid=4242, producer_library="ledgerstream", producer_adapter="langchain", key_id="9f" * 32,
        authenticity="verified", offline=False)
    values.update(overrides)
    return EntryEvent(**values)


def alert(**overrides: Any) -> AlertEvent:
    values: dict[str, Any] = dict(
        origin=Origin("ledgerstream.alerts", 2, 5), alert_id="a-1", kind="entry_hash_mismatch", severity="critical",
        seq_from=40, seq_to=40, agent_id="planner", detail="entry 40: stored hash differs", verifier_id="v1",
        time=1_764_000_001_000_000, evidence={"expected": "ab" * 32, "computed": "cd" * 32})
    values.update(overrides)
    return AlertEvent(**values)


NASTY_ENTRY = entry(agent_id=NASTY, action_type=NASTY, session_id=NASTY, policy_decision="deny",
                    policy_reason=NASTY, producer_host=NASTY, event_id=NASTY)
NASTY_ALERT = alert(kind=NASTY, detail=NASTY, agent_id=NASTY, verifier_id=NASTY, evidence={NASTY: NASTY},
                    key_id=NASTY, authenticity="forged", authenticity_reason="unknown_key")
VERIFIED_ALERT = alert(authenticity="verified", authenticity_reason="signed", key_id="2b" * 32)
FORGED_ALERT = alert(kind="all_clear", severity="info", detail="all clear", authenticity="forged",
                     authenticity_reason="wrong_verifier", key_id="3c" * 32)
SAMPLES = [entry(), alert(), NASTY_ENTRY, NASTY_ALERT,
           entry(session_id=None, trace_id=None, span_id=None, links=(), policy_decision=None, policy_rule=None),
           alert(seq_from=None, seq_to=None, agent_id=None, evidence={}, severity="info"),
           VERIFIED_ALERT, FORGED_ALERT]


def test_registry_has_the_four_formats() -> None:
    assert set(FORMATS) == {"ecs", "cef", "ocsf", "syslog"}
    with pytest.raises(ValueError, match="unknown SIEM format"):
        get_format("leef")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_one_line_per_event(fmt: str, event: Any) -> None:
    line = get_format(fmt).render(event)
    assert line and "\n" not in line and "\r" not in line


@pytest.mark.parametrize(("action_type", "operation"), [
    ("data:delete:users", "delete"), ("tool:search", "read"), ("db:insert", "create"), ("file:write", "create"),
    ("config:update", "update"), ("llm:call", "other"), ("tool:web_search", "read"), ("Data:DROP-table", "delete"),
])
def test_operation_from_action_type(action_type: str, operation: str) -> None:
    assert operation_of(action_type) == operation


def test_decode_event_maps_a_real_record_and_flags_garbage() -> None:
    action = make_action(agent_id="coder", action_type="tool:search")
    record = {"spec_version": 1, "seq": 3, "prev_hash": bytes(32), "entry_hash": b"\x11" * 32, "action": action,
              "received_at": 1_764_000_000_000_000, "source": {"topic": "a", "partition": 0, "offset": 9},
              "agent_seq": 0, "agent_prev_hash": bytes(32),
              "resolved_links": [], "key_id": "aa" * 32, "signature": b"\x01" * 3309, "timestamp_token": None}
    event = decode_event(codec.encode("LedgerEntry", record), Origin("t.entries", 0, 12), 0)
    assert isinstance(event, EntryEvent)
    # no trusted signer key: a signature field proves nothing, so the entry is not called signed
    assert (event.seq, event.agent_id, event.entry_hash, event.signed) == (3, "coder", "11" * 32, False)
    assert event.authenticity == "unchecked"
    bad = decode_event(b"\xc3\x01garbage", Origin("t.entries", 0, 13), 1_000_000)
    assert isinstance(bad, AlertEvent) and bad.kind == "undecodable" and bad.severity == "high"


def test_entry_authenticity_is_the_cores_verdict_under_the_trusted_signer_keys() -> None:
    """Issue 17: the ECS export marked forged entries signed. Only an entry whose signature
    verifies under a trusted signer key is signed; the oracle is who sealed each record."""
    from ledgerstream.core import mldsa
    from ledgerstream.core.verify import CheckerConfig
    from tests.support.ledger_builder import LedgerBuilder, entry_bytes, flip_inside, seal

    signer, attacker = mldsa.PrivateKey.generate(), mldsa.PrivateKey.generate()
    trust = CheckerConfig.from_keys([signer.public_key()])
    genuine = LedgerBuilder(signer).entry("coder")
    origin = Origin("t.entries", 0, 5)
    cases = {
        "genuine": (entry_bytes(genuine), ("verified", None)),
        "another key": (entry_bytes(seal(dict(genuine), attacker)), ("forged", "unknown_key")),
        "bit flip": (flip_inside(entry_bytes(genuine), bytes(genuine["signature"])[:64]), ("forged", "bad_signature")),
        "unsigned, trusted key": (entry_bytes(seal(dict(genuine), signer, signed=False)), ("unsigned", None)),
    }
    for name, (raw, want) in cases.items():
        event = decode_event(raw, origin, 0, None, trust)
        assert (event.authenticity, event.authenticity_reason) == want, name
        assert event.signed is (want[0] == "verified"), name
        for fmt in ("ecs", "ocsf"):
            doc = json.loads(get_format(fmt).render(event))
            fields = doc["ledgerstream"] if fmt == "ecs" else doc["unmapped"]["ledgerstream"]
            assert (fields["signed"], fields["authenticity"]) == (want[0] == "verified", want[0]), (name, fmt)
    forged = decode_event(cases["another key"][0], origin, 0, None, trust)
    assert "[FORGED]" in get_format("cef").render(forged) and "ledgerstreamAuthenticity=forged" in get_format("cef").render(forged)


# --- CEF ------------------------------------------------------------------------------------

CEF_HEADER = re.compile(r"^CEF:(0)\|((?:[^|\\\r\n]|\\[|\\])*)\|((?:[^|\\\r\n]|\\[|\\])*)\|((?:[^|\\\r\n]|\\[|\\])*)\|"
                        r"((?:[^|\\\r\n]|\\[|\\])*)\|((?:[^|\\\r\n]|\\[|\\])*)\|(\d|10)\|(.*)$")
CEF_KEY = re.compile(r"(?:^| )([A-Za-z0-9_]+)=")


def cef_parse(line: str) -> tuple[list[str], dict[str, str]]:
    """Strict CEF reader from the spec: header fields unescaped, extension split on unescaped
    ``key=``; a value may hold only escaped '=' and backslashes, and \\n / \\r for line breaks."""
    match = CEF_HEADER.match(line)
    assert match, f"not a CEF:0 line with 7 header fields: {line!r}"
    header = [re.sub(r"\\([|\\])", r"\1", match.group(i)) for i in range(2, 7)] + [match.group(7)]
    ext_text = match.group(8)
    # positions of keys: a key starts the text or follows a space, and its '=' is unescaped
    starts = [m for m in CEF_KEY.finditer(ext_text) if not _escaped(ext_text, m.end() - 1)]
    ext: dict[str, str] = {}
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(ext_text)
        raw = ext_text[m.end():end]
        assert re.fullmatch(r"(?:[^\\=\r\n]|\\[\\=nr])*", raw), f"bad escaping in {m.group(1)}={raw!r}"
        ext[m.group(1)] = re.sub(r"\\([\\=nr])", lambda g: {"n": "\n", "r": "\r"}.get(g.group(1), g.group(1)), raw)
    return header, ext


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index - 1 - backslashes >= 0 and text[index - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def test_cef_entry_fields_and_escaping() -> None:
    header, ext = cef_parse(get_format("cef").render(NASTY_ENTRY))
    vendor, product, version, signature_id, name, severity = header
    assert (vendor, product) == ("ledgerstream", "ledgerstream")
    assert signature_id == "entry:" + NASTY.replace("\r\n", " ").replace("\n", " ")
    assert severity == "5"  # denied by policy
    assert ext["suser"] == NASTY.replace("\r\n", "\n")
    assert ext["act"] == NASTY.replace("\r\n", "\n")
    assert ext["reason"] == NASTY.replace("\r\n", "\n")
    assert ext["cs3Label"] == "sessionId" and ext["cs3"] == NASTY.replace("\r\n", "\n")
    assert ext["cn1Label"] == "seq" and ext["cn1"] == "40"
    assert ext["cs1Label"] == "entryHash" and ext["cs1"] == "ab" * 32
    assert ext["rt"] == str(1_764_000_000_223_456 // 1000)


def test_cef_alert_fields() -> None:
    header, ext = cef_parse(get_format("cef").render(alert()))
    assert header[3] == "alert:entry_hash_mismatch" and header[5] == "10"
    assert ext["cat"] == "ledger/alert" and ext["cn1"] == "40" and ext["cs1"] == "v1"
    assert ext["msg"] == "entry 40: stored hash differs"
    header, ext = cef_parse(get_format("cef").render(NASTY_ALERT))
    assert ext["act"] == NASTY.replace("\r\n", "\n") and "|" in header[4]


def test_cef_header_escapes_pipe_and_backslash_only() -> None:
    line = get_format("cef").render(entry(action_type="a|b\\c=d"))
    assert line.split("|")[4:6] == ["entry:a\\", "b\\\\c=d"]  # '\|' splits naively; '=' is not escaped


@pytest.mark.parametrize("event", [entry(), alert(), entry(policy_reason="x = y", agent_id="a=b")])
def test_cef_pycef_reads_the_lines(event: Any) -> None:
    pycef = need("pycef")
    line = get_format("cef").render(event)
    parsed = pycef.parse(line)
    assert parsed is not None
    _, ext = cef_parse(line)
    assert parsed["DeviceVendor"] == "ledgerstream" and parsed["CEFVersion"] == "0"
    for key, value in ext.items():
        if key.endswith("Label"):
            continue  # pycef folds csN/csNLabel pairs into one key
        label = ext.get(f"{key}Label")
        got = parsed.get(label or key)
        assert got is not None, key
        assert re.sub(r"\\([\\=])", r"\1", got) == value


# --- RFC 5424 syslog -------------------------------------------------------------------------

_SD_NAME = r'[!#-<>-\\^-~]{1,32}'  # PRINTUSASCII except '=', ']', '"' and SP
SYSLOG = re.compile(
    r"^<(?P<pri>\d{1,3})>1 "
    r"(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})) "
    r"(?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
    rf"(?P<sd>-|(?:\[{_SD_NAME}(?: {_SD_NAME}=\"(?:[^\"\\\]\r\n]|\\[\"\\\]])*\")*\])+)"
    r"(?: (?P<msg>.*))?$")


def sd_values(sd: dict[str, dict[str, str]]) -> dict[str, str]:
    (element,) = sd.values()
    return {k: re.sub(r'\\(["\\\]])', r"\1", v) for k, v in element.items()}


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_syslog_strict_abnf(event: Any) -> None:
    line = get_format("syslog").render(event)
    match = SYSLOG.match(line)
    assert match, line
    assert 0 <= int(match["pri"]) <= 191 and int(match["pri"]) // 8 == 13  # facility: log audit
    dt.datetime.fromisoformat(match["ts"].replace("Z", "+00:00"))
    assert match["app"] == "ledgerstream" and match["msgid"] in ("ENTRY", "ALERT")


def test_syslog_parser_round_trips_structured_data() -> None:
    parser = need("syslog_rfc5424_parser")
    msg = parser.SyslogMessage.parse(get_format("syslog").render(NASTY_ENTRY))
    assert (msg.facility.name, msg.severity.name) == ("audit", "notice")  # facility 13 (log audit); denied -> notice
    assert msg.appname == "ledgerstream" and msg.msgid == "ENTRY"
    values = sd_values(msg.sd)
    flat = NASTY.replace("\r\n", " ").replace("\n", " ")
    assert values["agent_id"] == flat and values["action"] == flat and values["session_id"] == flat
    assert values["seq"] == "40" and values["entry_hash"] == "ab" * 32
    alert_msg = parser.SyslogMessage.parse(get_format("syslog").render(alert()))
    assert alert_msg.severity.name == "crit" and alert_msg.msgid == "ALERT"
    assert sd_values(alert_msg.sd)["kind"] == "entry_hash_mismatch"


@pytest.mark.parametrize("fmt", ["cef", "ecs", "ocsf"])
def test_syslog_envelope_wraps_other_formats(fmt: str) -> None:
    parser = need("syslog_rfc5424_parser")
    inner = get_format(fmt).render(NASTY_ALERT)
    line = envelope(NASTY_ALERT, inner)
    assert SYSLOG.match(line), line
    assert parser.SyslogMessage.parse(line).msg == inner


# --- OCSF ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ocsf_schemas() -> dict[int, Any]:
    ocsf = need("ocsf_json_schema")
    jsonschema = need("jsonschema")
    schema = ocsf.OcsfJsonSchemaEmbedded(ocsf.get_ocsf_schema(version="1.3.0"))
    out = {}
    for uid in (6003, 2004):
        class_schema = schema.get_class_schema(class_name=schema.lookup_class_name_from_uid(class_uid=uid), profiles=[])
        out[uid] = jsonschema.Draft202012Validator(class_schema)
    return out


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_ocsf_validates_against_the_published_schema(event: Any, ocsf_schemas: dict[int, Any]) -> None:
    doc = json.loads(get_format("ocsf").render(event))
    expected_class = 6003 if isinstance(event, EntryEvent) else 2004
    assert doc["class_uid"] == expected_class and doc["metadata"]["version"] == "1.3.0"
    assert doc["type_uid"] == doc["class_uid"] * 100 + doc["activity_id"]
    assert doc["category_uid"] == expected_class // 1000
    errors = sorted(ocsf_schemas[expected_class].iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_ocsf_mappings() -> None:
    delete = json.loads(get_format("ocsf").render(entry()))
    assert (delete["activity_id"], delete["type_uid"], delete["severity_id"]) == (4, 600304, 1)
    assert delete["actor"]["app_uid"] == "planner" and delete["api"]["operation"] == "data:delete:users"
    assert delete["time"] == 1_764_000_000_123 and delete["metadata"]["sequence"] == 40
    denied = json.loads(get_format("ocsf").render(entry(action_type="llm:call", policy_decision="deny")))
    assert (denied["activity_id"], denied["status_id"], denied["severity_id"]) == (99, 2, 3)
    finding = json.loads(get_format("ocsf").render(alert()))
    assert (finding["severity_id"], finding["finding_info"]["uid"]) == (5, "a-1")


# --- ECS -------------------------------------------------------------------------------------

#: ECS 9.0 fields this exporter may emit, with their ECS types (ECS field reference)
ECS_FIELDS = {
    "@timestamp": "date", "message": "text", "ecs.version": "keyword",
    "agent.type": "keyword", "agent.name": "keyword", "agent.version": "keyword",
    "observer.vendor": "keyword", "observer.product": "keyword", "observer.type": "keyword",
    "observer.version": "keyword",
    "data_stream.type": "keyword", "data_stream.dataset": "keyword", "data_stream.namespace": "keyword",
    "event.kind": "keyword", "event.category": "keyword", "event.type": "keyword", "event.action": "keyword",
    "event.id": "keyword", "event.sequence": "long", "event.dataset": "keyword", "event.module": "keyword",
    "event.provider": "keyword", "event.created": "date", "event.outcome": "keyword", "event.hash": "keyword",
    "event.severity": "long", "gen_ai.agent.id": "keyword", "related.hash": "keyword",
    "host.hostname": "keyword", "process.pid": "long", "trace.id": "keyword", "span.id": "keyword",
    "rule.name": "keyword", "rule.description": "keyword", "rule.ruleset": "keyword", "tags": "keyword",
}
#: documented exceptions (docs/siem.md): ECS 'labels' (keyword map), our own namespace, and
#: the top-level 'hash.sha256' the ledgerstream contract names (ECS nests 'hash' elsewhere)
CUSTOM_PREFIXES = ("labels.", "ledgerstream.")
CONTRACT_FIELDS = {"hash.sha256": "keyword"}
ECS_KINDS = {"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"}
ECS_CATEGORY_TYPES = {
    "api": {"access", "admin", "allowed", "change", "creation", "deletion", "denied", "end", "info", "start", "user"},
    "intrusion_detection": {"allowed", "denied", "info"},
}
ECS_OUTCOMES = {"failure", "success", "unknown"}
ECS_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not name.startswith(CUSTOM_PREFIXES) and name != "labels":
            out.update(flatten(value, name + "."))
        elif name == "labels":
            out.update({f"labels.{k}": v for k, v in value.items()})
        else:
            out[name] = value
    return out


def check_type(name: str, kind: str, value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if kind in ("keyword", "text"):
            assert isinstance(v, str), f"{name} must be a string"
        elif kind == "long":
            assert isinstance(v, int) and not isinstance(v, bool), f"{name} must be an integer"
        elif kind == "date":
            assert isinstance(v, str) and ECS_DATE.match(v), f"{name} must be an ISO 8601 date: {v!r}"


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_ecs_fields_are_ecs(event: Any) -> None:
    doc = json.loads(get_format("ecs").render(event))
    fields = flatten(doc)
    assert "@timestamp" in fields and fields["ecs.version"] == "9.0.0"
    for name, value in fields.items():
        if name.startswith("ledgerstream."):
            continue
        if name.startswith("labels."):
            assert isinstance(value, str), f"labels are keywords: {name}"
            continue
        kind = ECS_FIELDS.get(name) or CONTRACT_FIELDS.get(name)
        assert kind, f"{name} is not an ECS field"
        check_type(name, kind, value)
    assert fields["event.kind"] in ECS_KINDS
    assert fields["event.outcome"] in ECS_OUTCOMES if "event.outcome" in fields else True
    for category in fields["event.category"]:
        assert set(fields["event.type"]) <= ECS_CATEGORY_TYPES[category]


def test_ecs_agent_mapping_and_hashes() -> None:
    doc = json.loads(get_format("ecs").render(entry()))
    assert doc["gen_ai"]["agent"]["id"] == "planner" and doc["labels"]["agent_id"] == "planner"
    assert doc["agent"]["type"] == "ledgerstream-export"  # ECS agent = the shipper
    assert doc["hash"]["sha256"] == "ab" * 32 and doc["event"]["hash"] == "ab" * 32
    assert set(doc["related"]["hash"]) == {"ab" * 32, "cd" * 32, "12" * 32}
    assert doc["event"]["sequence"] == 40 and doc["event"]["type"] == ["deletion", "allowed"]
    assert doc["@timestamp"] == "2025-11-24T16:00:00.123456Z"
    denied = json.loads(get_format("ecs").render(entry(policy_decision="deny")))
    assert denied["event"]["outcome"] == "failure" and "denied" in denied["event"]["type"]
    found = json.loads(get_format("ecs").render(alert()))
    assert found["event"]["kind"] == "alert" and found["event"]["severity"] == 10


# --- authenticity (signed alerts, docs/spec.md section 10) -------------------------------------

AUTHENTICITY = [(VERIFIED_ALERT, "verified", False), (FORGED_ALERT, "forged", True), (alert(), "unsigned", True)]


@pytest.mark.parametrize("event,authenticity,forged", AUTHENTICITY, ids=[a for _, a, _ in AUTHENTICITY])
def test_every_format_marks_the_alerts_authenticity(event: AlertEvent, authenticity: str, forged: bool) -> None:
    mark = {"verified": "", "forged": "[FORGED] ", "unsigned": "[UNSIGNED] "}[authenticity]
    header, ext = cef_parse(get_format("cef").render(event))
    assert (ext["cs4Label"], ext["cs4"]) == ("authenticity", authenticity)
    assert ext["cs5Label"] == "authenticityReason" and ext["cs5"] == event.authenticity_reason
    assert header[4].startswith(mark) and ext["msg"] == event.detail  # the headline is marked, msg stays exact
    if event.key_id:
        assert (ext["cs6Label"], ext["cs6"]) == ("keyId", event.key_id)

    match = SYSLOG.match(get_format("syslog").render(event))
    params = dict(re.findall(r' ([!#-<>-\\^-~]+)="((?:[^"\\\]]|\\["\\\]])*)"', match["sd"]))
    assert params["authenticity"] == authenticity and params["forged"] == str(forged).lower()
    assert match["msg"].startswith(f"{mark}{event.kind}: ")

    ecs = json.loads(get_format("ecs").render(event))
    assert ecs["labels"]["authenticity"] == authenticity and ecs["labels"]["forged"] == str(forged).lower()
    assert ecs["ledgerstream"]["alert"]["authenticity"] == authenticity
    assert ecs["ledgerstream"]["alert"]["forged"] is forged
    assert ecs.get("tags") == ([f"alert_{authenticity}"] if forged else None)
    assert ecs["message"] == mark + event.detail

    ocsf = json.loads(get_format("ocsf").render(event))
    assert (ocsf["confidence_id"], ocsf["confidence"]) == ((1, "Low") if forged else (3, "High"))
    assert f"authenticity:{authenticity}" in ocsf["metadata"]["labels"]
    assert ("forged" in ocsf["metadata"]["labels"]) is forged
    assert ocsf["unmapped"]["ledgerstream"]["authenticity"] == authenticity
    assert ocsf["unmapped"]["ledgerstream"]["forged"] is forged
    assert ocsf["message"] == mark + event.detail

    wrapped = SYSLOG.match(envelope(event, "inner"))
    assert f'authenticity="{authenticity}"' in wrapped["sd"] and f'forged="{str(forged).lower()}"' in wrapped["sd"]


def test_decode_event_checks_the_alert_signature() -> None:
    from ledgerstream.core import mldsa
    from ledgerstream.core.alert_signature import VerifierKey, sign_alert

    key = mldsa.PrivateKey.from_seed(bytes([5]) * 32)
    trusted = {key.public_key().key_id: VerifierKey("v1", key.public_key())}
    record = {"alert_id": "a", "kind": "gap", "severity": "critical", "seq_from": 1, "seq_to": 2, "agent_id": None,
              "detail": "d", "evidence": {}, "verifier_id": "v1", "time": 5}
    origin = Origin("t.alerts", 0, 1)
    genuine = decode_event(codec.encode("Alert", sign_alert(record, key)), origin, 0, trusted)
    assert isinstance(genuine, AlertEvent) and (genuine.authenticity, genuine.forged) == ("verified", False)
    assert genuine.key_id == key.public_key().key_id
    forged = decode_event(codec.encode("Alert", sign_alert({**record, "verifier_id": "v2"}, key)), origin, 0, trusted)
    assert (forged.authenticity, forged.authenticity_reason, forged.forged) == ("forged", "wrong_verifier", True)
    unsigned = decode_event(codec.encode("Alert", record), origin, 0, trusted)
    assert (unsigned.authenticity, unsigned.forged) == ("unsigned", True)
    untrusted = decode_event(codec.encode("Alert", sign_alert(record, key)), origin, 0)  # no trusted keys
    assert (untrusted.authenticity, untrusted.authenticity_reason) == ("forged", "unknown_key")
