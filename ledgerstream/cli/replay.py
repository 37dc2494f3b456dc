"""``ledgerstream replay``: what happened, per agent / session / time / causal chain, re-verified.

Every shown entry is re-checked (docs/forensics.md) and carries one mark per check; a
failed check is shown, never hidden, and makes the exit status 1.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ledgerstream.cli.common import bootstrap_option, home_option, safe_text
from ledgerstream.cli.selection import exit_code, load_selection, selection_options
from ledgerstream.tools.replay import CHECKS, FAIL, OK, SKIP, EntryReport, Ledger, iso_time

GLYPH = {OK: ("✓", "green"), FAIL: ("✗", "bold red"), SKIP: ("·", "dim")}
MAX_LANES = 5


@click.command()
@selection_options
@click.option("--json", "fmt", flag_value="json", help="One JSON document on stdout.")
@click.option("--jsonl", "fmt", flag_value="jsonl", help="One JSON object per entry, then a summary line.")
@bootstrap_option
@home_option
def replay(fmt: str | None, bootstrap: str | None, home: Path | None, **opts: Any) -> None:
    """Replay the ledger from Kafka: filter, follow links across agents, re-verify.

    Each shown entry is checked again: entry hash, ML-DSA-65 signature (trusted keys:
    HOME/keys/signer.pub.pem, HOME/keys/trusted/*.pem, --trusted-key), payload commitment,
    chain and per-agent chain position, links, inclusion in the latest signed checkpoint,
    and the RFC 3161 token of the first checkpoint that published it (with a TSA CA).
    Exit status: 0 all shown entries verify, 1 a check failed, 2 usage or environment.
    """
    result = load_selection(opts, home, bootstrap)
    ledger, reports = result["ledger"], result["reports"]
    document = summary(ledger, reports, result)
    if fmt == "json":
        click.echo(json.dumps({**document, "entries": [entry_json(r, result) for r in reports]}, indent=2))
    elif fmt == "jsonl":
        for r in reports:
            click.echo(json.dumps({"type": "entry", **entry_json(r, result)}, separators=(",", ":")))
        click.echo(json.dumps({"type": "summary", **document}, separators=(",", ":")))
    else:
        render(Console(), ledger, reports, result)
    exit_code(document["ok"])


# --- JSON -------------------------------------------------------------------------------------

def entry_json(r: EntryReport, result: dict[str, Any]) -> dict[str, Any]:
    row, action = r.row, r.entry["action"]
    payload = action.get("payload")
    try:
        parsed = json.loads(bytes(payload)) if payload is not None else None
    except ValueError:
        parsed = None
    return {
        "seq": row.seq, "offset": row.offset, "event_id": row.event_id, "agent_id": row.agent_id,
        "session_id": row.session_id, "action_type": row.action_type,
        "occurred_at": row.occurred_at, "received_at": row.received_at, "time": iso_time(row.received_at),
        "entry_hash": bytes(r.entry["entry_hash"]).hex(), "key_id": r.entry["key_id"],
        "links": [{"agent_id": a, "event_id": e, "relation": rel} for a, e, rel in row.links],
        "payload": parsed, "selected_by": "filter" if result["selection"].matches(row) else "link",
        "ok": r.ok, "checkpoint": r.checkpoint_size, "anchored_at": r.anchored_at,
        "checks": {name: {"status": c.status, "detail": c.detail} for name, c in r.checks.items()},
    }


def summary(ledger: Ledger, reports: list[EntryReport], result: dict[str, Any]) -> dict[str, Any]:
    failed = sum(1 for r in reports if not r.ok)
    latest = next((cp for cp in reversed(ledger.checkpoints) if cp.signed), None)
    return {
        # undecodable records and bad checkpoints cannot be ruled out of any selection
        "ok": failed == 0 and not ledger.undecodable and not any(cp.problems for cp in ledger.checkpoints),
        "selection": result["selection"].describe(),
        "ledger": {"source": result.get("source", "topics"), "entries": ledger.size,
                   "records": len(ledger.rows) + len(ledger.undecodable),
                   "checkpoints": len(ledger.checkpoints),
                   "latest_checkpoint": None if latest is None else {
                       "tree_size": latest.tree_size, "root": latest.root.hex() if latest.root else None,
                       "matches_entries": ledger.matches_tree(latest), "timestamped": bool(latest.tokens)},
                   "undecodable": [{"offset": o, "detail": d} for o, d in ledger.undecodable],
                   "findings": ledger.findings},
        "trusted_keys": [{"key_id": k, "source": s} for k, s in sorted(result["keys"].sources.items())],
        "summary": {"shown": len(reports), "failed": failed,
                    "unpublished": sum(1 for r in reports if r.checks["inclusion"].status == SKIP)},
    }


# --- human ------------------------------------------------------------------------------------

def render(console: Console, ledger: Ledger, reports: list[EntryReport], result: dict[str, Any]) -> None:
    doc = summary(ledger, reports, result)
    lc = doc["ledger"]["latest_checkpoint"]
    console.print(f"[bold]ledger[/] {doc['ledger']['entries']} entries, {doc['ledger']['checkpoints']} checkpoints; "
                  + (f"latest signed checkpoint {lc['tree_size']}"
                     + ("" if lc["matches_entries"] else " [bold red](does not match the entries)[/]")
                     + ("" if lc["timestamped"] else " (not yet timestamped)") if lc else "no signed checkpoint"))
    console.print("[dim]trusted keys: " + ", ".join(k["key_id"][:16] for k in doc["trusted_keys"]) + "[/]")
    if not reports:
        console.print("no entry matches the selection")
    elif result["selection"].follow_links and any(r.row.links for r in reports):
        console.print(call_tree(reports))
    else:
        console.print(lanes(reports))
    console.print("[dim]checks: " + " ".join(CHECKS) + "  (✓ ok, ✗ failed, · not applicable)[/]")
    for r in reports:
        for name in r.failed:
            console.print(Text.assemble(("✗ ", "bold red"), safe_text(f"seq {r.row.seq} (offset {r.row.offset}, "
                                        f"{r.row.agent_id}) {name}: {r.checks[name].detail}")))
    for finding in ledger.findings:
        console.print(Text.assemble(("! ", "bold yellow"), safe_text(finding)))
    s = doc["summary"]
    verdict = ("[bold green]all verified[/]" if doc["ok"] else "[bold red]VERIFICATION FAILED[/]")
    console.print(f"{s['shown']} entries shown, {s['failed']} failed, {s['unpublished']} not yet in a checkpoint: {verdict}")


def marks(r: EntryReport) -> Text:
    text = Text()
    for name in CHECKS:
        glyph, style = GLYPH[r.checks[name].status]
        text.append(glyph, style=style)
    return text


def _time(us: int) -> str:
    return (iso_time(us) or "").replace("T", " ")[:23]


def lanes(reports: list[EntryReport]) -> Table:
    """A timeline with one column (lane) per agent, or an agent column when there are many."""
    agents = list(dict.fromkeys(r.row.agent_id for r in reports))
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("seq", justify="right")
    table.add_column("received (UTC)")
    by_lane = len(agents) <= MAX_LANES
    if by_lane:
        for agent in agents:
            table.add_column(Text(safe_text(agent)), overflow="fold")
    else:
        table.add_column("agent")
        table.add_column("action")
    table.add_column("session", style="dim")
    table.add_column("checks", no_wrap=True)
    for r in reports:
        action = Text(safe_text(r.row.action_type), style="bold red" if not r.ok else "")
        if r.row.links:
            action.append(" ← " + ", ".join(safe_text(a) for a, _, _ in r.row.links), style="cyan")
        cells: list[Any] = [str(r.row.seq), _time(r.row.received_at)]
        agent = Text(safe_text(r.row.agent_id))
        cells += [action if a == r.row.agent_id else "" for a in agents] if by_lane else [agent, action]
        table.add_row(*cells, Text(safe_text(r.row.session_id or "")), marks(r))
    return table


def call_tree(reports: list[EntryReport]) -> Tree:
    """Cross-agent calls as an indented tree: a node's children are the entries linking to it."""
    by_event = {r.row.event_id: r for r in reports}
    children: dict[str, list[EntryReport]] = {}
    roots = []
    for r in reports:
        parent = next((e for _, e, _ in r.row.links if e in by_event), None)
        if parent is None:
            roots.append(r)
        else:
            children.setdefault(parent, []).append(r)
    tree = Tree("[bold]causal closure[/] (children link to their parent)")

    def label(r: EntryReport) -> Text:
        extra = [e for _, e, _ in r.row.links[1:] if e in by_event]
        text = Text.assemble(marks(r), f"  {r.row.seq:>6}  {_time(r.row.received_at)}  ",
                             (safe_text(r.row.agent_id), "bold cyan"), "  ",
                             (safe_text(r.row.action_type), "bold red" if not r.ok else ""))
        if extra:
            text.append(f"  (also linked to seq {', '.join(str(by_event[e].row.seq) for e in extra)})", style="dim")
        return text

    placed: set[int] = set()

    def add(node: Tree, r: EntryReport) -> None:
        placed.add(r.row.offset)
        branch = node.add(label(r))
        for child in children.get(r.row.event_id, []):
            if child.row.offset not in placed:  # forged records could make cycles
                add(branch, child)

    for r in roots + reports:  # then anything a cycle kept from the roots: never hide an entry
        if r.row.offset not in placed:
            add(tree, r)
    return tree
