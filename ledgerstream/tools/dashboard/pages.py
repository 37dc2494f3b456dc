"""Server-rendered HTML for the entry page (everything escaped; no script needed)."""
from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from ledgerstream.tools.dashboard.checks import EntryReport

_STATE_TEXT = {
    "sequenced": "sequenced: in the chain, not yet in a signed checkpoint",
    "published": "published: included in a signed checkpoint",
    "timestamped": "published and timestamped: in a signed checkpoint with a valid RFC 3161 token",
}


def _time(micros: Any) -> str:
    if not isinstance(micros, int):
        return "-"
    return dt.datetime.fromtimestamp(micros / 1e6, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _layout(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} - ledgerstream</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><header><a class="brand" href="/">ledgerstream</a><span class="sub">verifier dashboard</span></header>
<main>{body}</main></body></html>"""


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{escape(k)}</th><td><code>{escape(str(v))}</code></td></tr>"
                   for k, v in pairs if v not in (None, "", []))


def entry(report: EntryReport) -> str:
    e, action = report.entry, report.entry["action"]
    verdict = "verified" if report.verified else "NOT verified"
    checks = "".join(
        f'<tr class="check {escape(c.status)}"><th>{escape(c.name)}</th>'
        f'<td><span class="badge {escape(c.status)}">{escape(c.status)}</span></td><td>{escape(c.detail)}</td></tr>'
        for c in report.checks)
    links = "".join(
        f"<li>{escape(l['agent_id'])} / <code>{escape(l['event_id'])}</code>: {escape(l['status'])}"
        + (f' &rarr; <a href="/entry/{int(l["seq"])}">seq {int(l["seq"])}</a>' if l.get("seq") is not None else "")
        + "</li>" for l in e.get("resolved_links") or [])
    policy = action.get("policy") or {}
    fields = _rows([
        ("seq", e["seq"]), ("agent", action["agent_id"]), ("agent seq", e["agent_seq"]),
        ("action type", action["action_type"]), ("event id", action["event_id"]),
        ("session", action.get("session_id")), ("occurred at (agent clock)", _time(action["occurred_at"])),
        ("received at (signer clock)", _time(e["received_at"])), ("entry hash", e["entry_hash"]),
        ("prev hash", e["prev_hash"]), ("agent prev hash", e["agent_prev_hash"]),
        ("payload commitment", action["payload_hash"]), ("payload", action["payload"]),
        ("policy", f"{policy.get('decision')} ({policy.get('rule')})" if policy else None),
        ("key id", e["key_id"]), ("signature", e.get("signature") or "none (checkpoint signing mode)"),
        ("source", f"{e['source']['topic']}[{e['source']['partition']}]@{e['source']['offset']}"),
        ("entries topic offset", report.offset),
    ])
    proof = ""
    if report.proof:
        p = report.proof
        hashes = "".join(f"<li><code>{escape(h)}</code></li>" for h in p["hashes"]) or "<li>(none: single-leaf tree)</li>"
        proof = f"""<section id="proof"><h2>Inclusion proof (RFC 9162)</h2>
<table class="kv">{_rows([("leaf index", p["leaf_index"]), ("tree size", p["tree_size"]),
                          ("leaf hash", p["leaf_hash"]), ("checkpoint root", p["root_hash"]),
                          ("checkpoint signature", p["checkpoint_signature"])])}</table>
<h3>Audit path ({len(p["hashes"])} hashes, leaf side first)</h3><ol class="hashes">{hashes}</ol></section>"""
    others = ""
    if report.other_records:
        items = "".join(f"<li>offset {o['offset']}: {escape(o['reason'])}</li>" for o in report.other_records)
        others = f'<section class="warning"><h2>Other records claim seq {report.seq}</h2><ul>{items}</ul></section>'
    previous = f'<a href="/entry/{report.seq - 1}">&larr; seq {report.seq - 1}</a>' if report.seq else ""
    nav = f'<nav class="pager">{previous}<a href="/entry/{report.seq + 1}">seq {report.seq + 1} &rarr;</a></nav>'
    body = f"""<h1>Entry {report.seq} <span id="verdict" class="badge {'ok' if report.verified else 'failed'}">{verdict}</span></h1>
<p id="state" class="state">{escape(_STATE_TEXT.get(report.state, report.state))}</p>
{others}
<section id="checks"><h2>Verification</h2><table class="checks">{checks}</table></section>
{proof}
<section id="fields"><h2>Entry</h2><table class="kv">{fields}</table>
{"<h3>Links to other agents' events</h3><ul>" + links + "</ul>" if links else ""}</section>
{nav}"""
    return _layout(f"Entry {report.seq}", body)


def not_found(seq: int, reason: str) -> str:
    return _layout(f"Entry {seq}", f"<h1>Entry {seq}</h1><p class=\"warning\">{escape(reason)}</p>"
                                   '<p><a href="/">back to the overview</a></p>')
