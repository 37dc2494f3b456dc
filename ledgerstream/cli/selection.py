"""Options shared by ``replay`` and ``export bundle``: filters, trust, and the ledger read.

Why shared: the bundle must contain exactly what ``replay`` with the same filters shows,
re-verified the same way, so both commands go through :func:`load_selection`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ledgerstream.core import config
from ledgerstream.core.verify import TrustedKeys, tsa_ca
from ledgerstream.core.verify.trust import NoteTrust
from ledgerstream.index.reads import open_for
from ledgerstream.tools import replay as rp
from ledgerstream.tools.ledger_answers import DEFAULT_WAIT
from ledgerstream.tools.replay_index import indexed_ledger


def selection_options(f: Callable) -> Callable:
    options = [
        click.option("--agent", "agents", multiple=True, metavar="ID", help="Only this agent (repeatable)."),
        click.option("--session", "sessions", multiple=True, metavar="ID", help="Only this session (repeatable)."),
        click.option("--action-type", "action_types", multiple=True, metavar="GLOB",
                     help="Only action types matching this glob, e.g. 'data:delete:*' (repeatable)."),
        click.option("--since", metavar="T", help="received_at >= T: ISO 8601 (UTC if no zone) or '15m', '2h', '7d' ago."),
        click.option("--until", metavar="T", help="received_at < T (same forms as --since)."),
        click.option("--seq", "seq_range", metavar="A..B", help="Sequence numbers A..B inclusive (A.., ..B, N)."),
        click.option("--follow-links", is_flag=True,
                     help="Add the causal closure: every event linked to or from the selected ones, across agents."),
        click.option("--trusted-key", "trusted_keys", multiple=True,
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Also trust this signer public key PEM (besides HOME/keys/signer.pub.pem and "
                          "HOME/keys/trusted/*.pem)."),
        click.option("--tsa-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="TSA CA certificate(s) PEM [HOME/tsa/ca.pem]."),
        click.option("--topic-prefix", default=None,
                     help="Topic name prefix [the dev stack's, or $LEDGERSTREAM_TOPIC_PREFIX]."),
        click.option("--wait", type=click.FloatRange(min=0), default=DEFAULT_WAIT, show_default=True,
                     metavar="SECONDS",
                     help="With a ledger index: how long to wait for it to reach the ledger's newest entry "
                          "(it never answers from a lagging index)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_selection(agents: tuple[str, ...], sessions: tuple[str, ...], action_types: tuple[str, ...],
                    since: str | None, until: str | None, seq_range: str | None, follow_links: bool) -> rp.Selection:
    try:
        lo, hi = rp.parse_seq_range(seq_range) if seq_range else (None, None)
        return rp.Selection(agents, sessions, action_types, rp.parse_time(since) if since else None,
                            rp.parse_time(until) if until else None, lo, hi, follow_links)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def stderr() -> Console:
    return Console(stderr=True)


def progress_bar(console: Console) -> Progress:
    """A transient bar on stderr, shown only on a terminal (scripts get clean output)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def read_selection(opts: dict[str, Any], home: Path | None, bootstrap: str | None,
                   console: Console | None = None) -> dict[str, Any]:
    """Select entries (with their link closure, ordered by offset): from the ledger index
    when HOME has one that trusts at least these keys (O(log n + k), ``replay_index.py``),
    else from one read of both topics through the core's rule (``replay.read_ledger``).

    Returns ``ledger``, ``rows``, ``selection``, ``keys``, ``tsa_ca``, ``bootstrap``,
    ``topics``, ``home`` and ``source`` ("index" or "topics").
    """
    home_dir = Path(home).expanduser().resolve() if home else config.home()
    selection = build_selection(opts["agents"], opts["sessions"], opts["action_types"], opts["since"],
                                opts["until"], opts["seq_range"], opts["follow_links"])
    server = config.resolve_bootstrap(bootstrap, home_dir)
    keys = TrustedKeys.load(home_dir, opts["trusted_keys"])
    ca = tsa_ca(home_dir, opts["tsa_ca"])
    topics = (config.Topics.with_prefix(opts["topic_prefix"]) if opts["topic_prefix"] is not None
              else config.resolve_topics(home_dir))
    console = console or stderr()
    ix = open_for(home_dir, server, topics)
    if ix is not None and not set(keys.by_id) <= set(ix.config.trusted_keys if ix.config else ()):
        console.print(f"the ledger index in {home_dir / 'index'} does not trust every key given: reading the topics")
        ix.close()
        ix = None
    if ix is not None:
        try:
            ledger, rows = indexed_ledger(ix, selection, wait=float(opts.get("wait", DEFAULT_WAIT)))
        finally:
            ix.close()
    else:
        with progress_bar(console) as bar:
            task = bar.add_task("reading ledger", total=rp.end_offset(server, topics.entries))
            ledger = rp.read_ledger(server, topics, selection, keys, progress=lambda n: bar.advance(task, n),
                                    notes=NoteTrust.load(home_dir))
        rows = rp.select(ledger, selection)
    return {"ledger": ledger, "rows": rows, "selection": selection, "keys": keys, "tsa_ca": ca,
            "bootstrap": server, "topics": topics, "home": home_dir, "source": "topics" if ix is None else "index"}


def load_selection(opts: dict[str, Any], home: Path | None, bootstrap: str | None) -> dict[str, Any]:
    """:func:`read_selection`, then every selected entry re-verified: adds ``reports``
    (an EntryReport per shown entry, ordered by offset)."""
    console = stderr()
    result = read_selection(opts, home, bootstrap, console)
    ledger, rows = result["ledger"], result["rows"]
    rp.ensure_raw(ledger, rows, rp.kafka_fetch(result["bootstrap"], result["topics"].entries))
    with progress_bar(console) as bar:
        task = bar.add_task("verifying", total=len(rows))
        checker = rp.EntryChecker(ledger, result["keys"], result["tsa_ca"])
        result["reports"] = list(rp.check_all(checker, rows, progress=lambda n: bar.advance(task, n)))
    return result


def exit_code(ok: bool) -> None:
    sys.exit(0 if ok else 1)
