"""The read side of the MCP server: verify, search, replay, prove, export, checkpoints, alerts.

Each function is a thin, synchronous caller of the library code behind the matching CLI
command and returns the same JSON document that command prints with ``--json``, so a
model, a script and a person at the shell all see one shape (docs/mcp.md). Bad input
raises ``ValueError`` / ``LookupError`` / ``click.BadParameter``; an unusable environment
raises ``ConfigError``; the server turns each into an MCP tool error.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ledgerstream.cli.alerts import alert_rows
from ledgerstream.cli.replay import entry_json, summary
from ledgerstream.cli.selection import load_selection, read_selection
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.verify import load_approvers
from ledgerstream.mcp.server_config import ServeConfig
from ledgerstream.tools import ledger_answers
from ledgerstream.tools import replay as rp
from ledgerstream.tools.bundle_export import export_bundle as build_bundle
from ledgerstream.verifier_worker.oneshot import verify_ledger

#: where ``search`` read the entries from, by ``read_selection``'s source
SEARCH_SOURCE = {"index": "the ledger index (O(log n + k))",
                 "topics": "entries topic, read from its beginning (no ledger index in HOME)"}


def verify(cfg: ServeConfig) -> dict[str, Any]:
    """``ledgerstream verify --json``: the whole ledger, checkpoints first, then every entry."""
    return jsonable(verify_ledger(cfg.bootstrap(), cfg.topics(), cfg.checker_config()).to_json())


def search(cfg: ServeConfig, *, agent_id: str | None = None, session_id: str | None = None,
           action_type: str | None = None, since: str | None = None, until: str | None = None,
           limit: int = 50) -> dict[str, Any]:
    """Entries matching every given filter (``replay``'s selection), the newest ``limit`` of
    them in ledger order; no re-verification, so it stays cheap (``replay`` re-verifies)."""
    opts = cfg.selection_options(agents=_one(agent_id), sessions=_one(session_id), action_types=_one(action_type),
                                 since=since, until=until)
    result = read_selection(opts, cfg.home, cfg.bootstrap_option)
    ledger, rows = result["ledger"], result["rows"]
    shown = rows[-limit:]
    return {"source": SEARCH_SOURCE[result["source"]], "selection": result["selection"].describe(),
            "ledger_entries": ledger.size, "matched": len(rows), "returned": len(shown),
            "truncated": len(shown) < len(rows), "entries": [_row_json(row) for row in shown]}


def _row_json(row: rp.Row) -> dict[str, Any]:
    return {"seq": row.seq, "offset": row.offset, "event_id": row.event_id, "agent_id": row.agent_id,
            "session_id": row.session_id, "action_type": row.action_type, "occurred_at": row.occurred_at,
            "received_at": row.received_at, "time": rp.iso_time(row.received_at), "entry_hash": row.entry_hash.hex(),
            "on_chain": row.on_chain}


def replay(cfg: ServeConfig, *, agent_id: str | None = None, session_id: str | None = None,
           action_type: str | None = None, since: str | None = None, until: str | None = None,
           seq_range: str | None = None, follow_links: bool = False, limit: int = 100) -> dict[str, Any]:
    """``ledgerstream replay --json [--follow-links]``: every selected entry re-verified; the
    document lists the newest ``limit`` entries ("truncated" says if there were more), while
    "ok" and "summary" cover all of them."""
    opts = cfg.selection_options(agents=_one(agent_id), sessions=_one(session_id), action_types=_one(action_type),
                                 since=since, until=until, seq_range=seq_range, follow_links=follow_links)
    result = load_selection(opts, cfg.home, cfg.bootstrap_option)
    reports = result["reports"]
    shown = reports[-limit:]
    return {**summary(result["ledger"], reports, result), "truncated": len(shown) < len(reports),
            "entries": [entry_json(r, result) for r in shown]}


def prove_inclusion(cfg: ServeConfig, seq: int, tree_size: int | None = None) -> dict[str, Any]:
    """``ledgerstream prove inclusion --seq N [--tree-size M] --json``."""
    return ledger_answers.inclusion(cfg.home, cfg.bootstrap(), cfg.topics(), seq, tree_size)


def export_bundle(cfg: ServeConfig, out_path: str, *, agent_id: str | None = None, session_id: str | None = None,
                  action_type: str | None = None, since: str | None = None, until: str | None = None,
                  seq_range: str | None = None, follow_links: bool = False,
                  redact_payloads: bool = False) -> dict[str, Any]:
    """``ledgerstream export bundle --json``, except that an existing file is never
    overwritten (a model chooses the path). Returns the path, the entry count and the
    file's SHA-256 (``bundle_sha256``) among the exporter's results."""
    out = Path(out_path).expanduser().resolve()
    if out.exists():
        raise ConfigError(f"{out} already exists: choose a new file name (the MCP server never overwrites)")
    if not out.parent.is_dir():
        raise ConfigError(f"folder {out.parent} does not exist")
    opts = cfg.selection_options(agents=_one(agent_id), sessions=_one(session_id), action_types=_one(action_type),
                                 since=since, until=until, seq_range=seq_range, follow_links=follow_links)
    result = load_selection(opts, cfg.home, cfg.bootstrap_option)
    if result["tsa_ca"] is None:
        raise ConfigError("a bundle needs the TSA CA: start the server with --tsa-ca PEM (dev stack: HOME/tsa/ca.pem)")
    done = build_bundle(result["ledger"], result["reports"], result["keys"], result["tsa_ca"], result["selection"],
                        out, redact=redact_payloads, approvers=load_approvers(cfg.home, cfg.policy))
    return jsonable({"ok": True, **dataclasses.asdict(done), "redacted_payloads": redact_payloads})


def checkpoints(cfg: ServeConfig) -> list[dict[str, Any]]:
    """``ledgerstream checkpoints list --json``: every (with an index: verified) checkpoint, oldest first."""
    return ledger_answers.checkpoints(cfg.home, cfg.bootstrap(), cfg.topics())


def alerts(cfg: ServeConfig) -> list[dict[str, Any]]:
    """``ledgerstream alerts --json``: the verifiers' alerts, oldest first."""
    rows = alert_rows(cfg.bootstrap(), cfg.topics().alerts, since=None, kinds=(), follow=False)
    return jsonable(sorted(rows, key=lambda r: (r["time"], r["verifier_id"])))


def _one(value: str | None) -> tuple[str, ...]:
    """A single optional filter value as the selection's tuple; an empty string is a mistake."""
    if value is None:
        return ()
    if not value.strip():
        raise ValueError("a filter value must not be empty (leave the argument out instead)")
    return (value,)


def jsonable(value: Any) -> Any:
    """Plain JSON values, encoded as the CLI's ``--json`` encodes them (bytes as hex, paths as text)."""
    return json.loads(json.dumps(value, default=_encode))


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
