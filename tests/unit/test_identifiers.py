"""Clean identifiers (issue 19, item 4): one rule in records.validate_identifier, applied by
the producer library, the CLI and the signer to new actions only; canonical payloads; and
terminal escaping of ledger-derived text. Expected verdicts come from ``unicodedata`` directly
and from the issue's cases, never from the code under test."""
from __future__ import annotations

import io
import json
import os
import random
import sys
import unicodedata
from typing import Any

import pytest
import rfc8785
from click.testing import CliRunner
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ledgerstream.cli.common import safe_text
from ledgerstream.cli.main import cli
from ledgerstream.core import records
from ledgerstream.core.wire import codec
from ledgerstream.core.approvals import ApproverSet
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.mldsa import PrivateKey, public_key_pem
from ledgerstream.core.verify import CHECKPOINTS, ENTRIES, Checker, CheckerConfig
from ledgerstream.producers.approvals import respond
from ledgerstream.producers.ledger import Ledger
from ledgerstream.signer_worker.sequencer import Sequencer, Source
from ledgerstream.signer_worker.state import LedgerState
from support.actions import make_action
from support.ledger_builder import LedgerBuilder, enc, entry_bytes

pytestmark = pytest.mark.unit

REFUSED = {"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"}  # issue 19 item 4 and the brief, not records' constant
#: (id, the first offending code point) - the issue's cases
BAD_IDS = {
    "nul": ("agent\x00x", 0x0000),
    "esc_crlf": ("agent\x1b[31m\r\n", 0x001B),
    "bidi_override": ("agent\u202egnp.exe", 0x202E),
    "zero_width_space": ("base-agent\u200b", 0x200B),
    "unassigned": ("agent\u0378", 0x0378),
    "line_separator": ("a\u2028b", 0x2028),
    "c1_control": ("a\x9bb", 0x009B),
}
KEY = PrivateKey.from_seed(bytes(range(32)))
SRC = Source("t.actions", 0, 7, b"k")


# --- the rule ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(BAD_IDS))
def test_bad_ids_are_refused_naming_field_and_code_point(case: str) -> None:
    value, code = BAD_IDS[case]
    with pytest.raises(ValueError) as info:
        records.validate_identifier("agent_id", value)
    assert "agent_id" in str(info.value) and f"U+{code:04X}" in str(info.value)
    assert value not in str(info.value)  # the message itself carries no raw control


def test_every_code_point_follows_unicodedata() -> None:
    """All 1,114,112 code points: refused exactly when unicodedata says Cc/Cf/Zl/Zp/Cs/Cn."""
    wrong = []
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        refused = unicodedata.category(ch) in REFUSED
        try:
            records.validate_identifier("agent_id", f"a{ch}b")
            ok = True
        except ValueError:
            ok = False
        if ok == refused:
            wrong.append(hex(code))
    assert not wrong, wrong[:20]
    assert records.UNICODE_VERSION == unicodedata.unidata_version


@pytest.mark.parametrize("value", ["agent-a", "planner é", "агент", "工具", "a b", "[red]x", "a\\x00"])
def test_clean_ids_pass(value: str) -> None:
    records.validate_identifier("agent_id", value)


@pytest.mark.parametrize("value", [" agent", "agent ", "\u3000agent", "agent\u00a0", "", "x" * 257])
def test_edges_and_lengths_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="agent_id"):
        records.validate_identifier("agent_id", value)


def test_action_type_with_a_final_newline_is_refused() -> None:
    with pytest.raises(ValueError):
        records.validate_action_type("tool:search\n")


@pytest.mark.parametrize("field", ["event_id", "agent_id", "session_id", "action_type"])
def test_validate_action_checks_every_id_field(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        records.validate_action(dict(make_action(), **{field: "x\u202ey"}))


def test_validate_action_checks_links_and_approvals() -> None:
    bad_link = make_action(links=[{"agent_id": "a\x1b", "event_id": "e", "relation": "caused_by"}])
    with pytest.raises(ValueError, match="links"):
        records.validate_action(bad_link)
    approval = {"request_id": "r", "approver_id": "alice\u200b", "key_id": "k", "decision": "approve",
                "approved_at": 1, "signature": b"s"}
    with pytest.raises(ValueError, match="approver_id"):
        records.validate_action(dict(make_action(), approvals=[approval]))


# --- canonical payloads -----------------------------------------------------------------------

def _with_payload(payload: bytes) -> dict[str, Any]:
    salt = os.urandom(records.SALT_LEN)
    return dict(make_action(), payload=payload, payload_salt=salt,
                payload_hash=records.payload_commitment(salt, payload))


NOT_CANONICAL = {
    "spaces_and_order": b'{"b":1, "a":2}',
    "unsorted": b'{"b":1,"a":2}',
    "not_json": b"hello, world",
    "nan": b'{"a":NaN}',
    "float_form": b'{"a":1.0}',
    "escaped_ascii": b'{"a":"\\u0041"}',
    "duplicate_keys": b'{"a":1,"a":1}',
    "big_integer": b'{"a":9007199254740993}',
    "latin1": '{"a":"é"}'.encode("latin-1"),
    "trailing_newline": b'{"a":1}\n',
    "lone_surrogate": b'{"a":"\\ud800"}',
    "deeply_nested": b"[" * 200_000 + b"]" * 200_000,  # RecursionError inside json: still a ValueError
    "code_point_key_order": '{"\ue000":2,"\U0001f600":1}'.encode(),  # JCS sorts keys by UTF-16 units
}


@pytest.mark.parametrize("case", sorted(NOT_CANONICAL))
def test_non_canonical_payloads_are_refused(case: str) -> None:
    with pytest.raises(ValueError, match="payload"):
        records.validate_action(_with_payload(NOT_CANONICAL[case]))


@pytest.mark.parametrize("value", [{"b": 1, "a": [1, 2.5, -0.0, 1e21, None, True]},
                                   {"é": "\u2028\x00", "😀": 1, "\ue000": 2},
                                   "just a string", 12, [], {"n": 9007199254740991}, {"x": "a\"\\/\t"}])
def test_rfc8785_output_is_accepted(value: Any) -> None:
    records.validate_action(_with_payload(rfc8785.dumps(value)))  # the oracle: the rfc8785 package


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(["str", "int", "float", "bool", "null"] + (["list", "dict"] * 2 if depth < 3 else []))
    alphabet = ["a", "b", "Z", "é", "\x00", "\x1f", "\x7f", '"', "\\", "\u2028", "\ue000", "\uffff",
                "\U0001f600", "工"]
    if kind == "str":
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
    if kind == "int":
        return rng.choice([0, -1, 7, 2**53 - 1, -(2**53 - 1), 10**15, rng.randint(-10**6, 10**6)])
    if kind == "float":
        return rng.choice([0.5, -0.0, 1e21, 1e-7, 123.0, 3.14159, rng.random()])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3))): _random_value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}


def test_payload_verdicts_agree_with_the_rfc8785_package_on_random_values() -> None:
    """Every candidate text parses back to the same value (json round-trips exactly), so it
    is canonical exactly when it equals rfc8785's bytes for that value."""
    rng = random.Random(19)
    checked = 0
    for _ in range(3000):
        value = _random_value(rng)
        canonical = rfc8785.dumps(value)
        for text in (canonical, json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
                     json.dumps(value, ensure_ascii=False).encode(), json.dumps(value).encode()):
            if text == canonical:
                records.validate_canonical_payload(text)
            else:
                with pytest.raises(ValueError):
                    records.validate_canonical_payload(text)
            checked += 1
    assert checked == 12000


# --- producer library and CLI -----------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(BAD_IDS))
def test_library_refuses_bad_agent_ids(case: str, tmp_path) -> None:
    value, code = BAD_IDS[case]
    with pytest.raises(ValueError, match=f"agent_id.*U\\+{code:04X}"):
        Ledger(value, spool_dir=tmp_path)


def test_library_refuses_bad_sessions_and_links(tmp_path) -> None:
    ledger = Ledger("agent-a", spool_dir=tmp_path)
    try:
        with pytest.raises(ValueError, match="session.*U\\+200B"):
            ledger.emit("tool:x", {"q": 1}, session="s\u200b")
        with pytest.raises(ValueError, match="session_id.*U\\+202E"):
            ledger.session(session_id="s\u202e")
        with pytest.raises(ValueError, match="link agent_id.*U\\+0000"):
            ledger.emit("tool:x", {"q": 1}, links=[("a\x00", "e1")])
        with pytest.raises(ValueError, match="action_type"):
            ledger.emit("tool:x\x1b", {"q": 1})
    finally:
        ledger.close()


def test_approvals_refuse_unclean_approver_ids(tmp_path) -> None:
    with pytest.raises(ValueError, match="approver_id.*U\\+200B"):  # before any network access
        respond("127.0.0.1:9", "t.approvals", "req-1", KEY, "alice\u200b", timeout=0.1)
    (tmp_path / "alice.pem").write_bytes(public_key_pem(KEY.public_key()))
    with pytest.raises(ConfigError, match="U\\+202E"):
        ApproverSet.from_config({"approvers": {"alice\u202e": "alice.pem"}}, tmp_path)
    assert ApproverSet.from_config({"approvers": {"alice": "alice.pem"}}, tmp_path).approvers


@pytest.mark.parametrize("case", ["esc_crlf", "bidi_override", "unassigned"])
def test_cli_emit_exits_2_naming_the_code_point(case: str, tmp_path) -> None:
    value, code = BAD_IDS[case]
    result = CliRunner().invoke(
        cli, ["emit", "--agent", value, "--spool", str(tmp_path), "tool:x"])
    assert result.exit_code == 2, result.output
    assert f"U+{code:04X}" in result.stderr and "Traceback" not in result.stderr


# --- the signer -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(BAD_IDS))
def test_sequencer_dead_letters_bad_ids(case: str) -> None:
    value, code = BAD_IDS[case]
    seq = Sequencer(LedgerState(1000), KEY)
    for field in ("agent_id", "session_id", "event_id"):
        out = seq.process(codec.encode("ActionEvent", dict(make_action(), **{field: value})), SRC)
        assert out.entry is None and out.dead_letter["reason"] == "invalid_field"
        assert field in out.dead_letter["detail"] and f"U+{code:04X}" in out.dead_letter["detail"]
    assert seq.state.next_seq == 0
    assert seq.process(codec.encode("ActionEvent", make_action()), SRC).entry is not None


@pytest.mark.parametrize("case", ["spaces_and_order", "not_json", "deeply_nested"])
def test_sequencer_dead_letters_non_canonical_payloads(case: str) -> None:
    seq = Sequencer(LedgerState(1000), KEY)
    out = seq.process(codec.encode("ActionEvent", _with_payload(NOT_CANONICAL[case])), SRC)
    assert out.dead_letter["reason"] == "invalid_field" and "payload" in out.dead_letter["detail"]


def test_old_entries_with_such_ids_still_verify() -> None:
    """Sequenced before the rule existed: the verifier does not apply it to entries."""
    builder = LedgerBuilder(KEY)
    for value, _ in BAD_IDS.values():
        builder.entry(agent_id=value, session_id=value)
    builder.entry(agent_id="agent-a")
    raws = [(ENTRIES, i * 2, entry_bytes(e)) for i, e in enumerate(builder.entries)]
    raws.append((CHECKPOINTS, 0, enc("Checkpoint", builder.checkpoint())))
    checker = Checker(CheckerConfig.from_keys([KEY.public_key()], link_grace_entries=50, link_grace_seconds=None))
    found = [f for topic, offset, raw in raws for f in checker.feed(topic, offset, raw)] + checker.finish()
    assert found == []


# --- terminal escaping ------------------------------------------------------------------------

def _visible(text: str) -> bool:
    return not any(unicodedata.category(ch) in REFUSED for ch in text)


@pytest.mark.parametrize("case", sorted(BAD_IDS))
def test_safe_text_leaves_no_invisible_character(case: str) -> None:
    value, code = BAD_IDS[case]
    shown = safe_text(value)
    assert _visible(shown)
    assert (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") in shown


def test_safe_text_keeps_ordinary_text() -> None:
    assert safe_text("planner é 工具 [red]x") == "planner é 工具 [red]x"
    assert safe_text("base-agent\u200b") != safe_text("base-agent")


def test_rich_table_with_text_cells_shows_markup_literally() -> None:
    out = io.StringIO()
    table = Table("agent")
    table.add_row(Text(safe_text("[red]evil\x1b[2J")))
    Console(file=out, width=80, color_system=None).print(table)
    assert "[red]evil\\x1b[2J" in out.getvalue() and "\x1b" not in out.getvalue()


@pytest.mark.parametrize("view", ["lanes", "lanes_many", "call_tree"])
def test_replay_views_escape_old_unclean_ids(view: str) -> None:
    from ledgerstream.cli.replay import call_tree, lanes
    from ledgerstream.tools.replay import CHECKS, FAIL, OK, Check, EntryReport, Row

    def report(seq: int, agent: str, links: tuple = ()) -> EntryReport:
        row = Row(offset=seq, seq=seq, event_id=f"e{seq}", agent_id=agent, session_id="s\u202e[red]",
                  action_type="tool:x\x1b", occurred_at=1, received_at=1, links=links, entry_hash=bytes(32),
                  on_chain=True)
        return EntryReport(row, {}, {name: Check(FAIL if seq == 1 else OK, "bad \x00") for name in CHECKS}, None, None)

    agents = ["a\x1b[2J", "[bold]b\u200b"] + ([f"x{i}" for i in range(20)] if view == "lanes_many" else [])
    reports = [report(i, a) for i, a in enumerate(agents)]
    reports.append(report(len(agents), "c\x00", links=(("a\x1b[2J", "e0", "caused_by"),)))
    out = io.StringIO()
    Console(file=out, width=400, color_system=None).print(call_tree(reports) if view == "call_tree" else lanes(reports))
    text = out.getvalue()
    assert _visible(text.replace("\n", "")), repr(text)
    assert "a\\x1b[2J" in text and "c\\x00" in text and "[bold]b\\u200b" in text
