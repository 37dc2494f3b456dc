"""``ledgerstream agents``: every agent in the ledger with its chain head."""
from __future__ import annotations

import click

from ledgerstream.cli.common import EXIT_USAGE, bootstrap_option, fail, info, json_option, print_json, safe_text


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--topic", default=None, help="Entries topic [default: the dev stack's or $LEDGERSTREAM_TOPIC_PREFIX].")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds allowed for reading the ledger.")
@bootstrap_option
@json_option
def agents(topic: str | None, timeout: float, bootstrap: str | None, as_json: bool) -> None:
    """List the agents in the ledger, read from the entries topic from its beginning.

    Per agent: number of entries, first and last ledger seq, last activity (when its
    latest action happened, UTC) and chain head (hex entry_hash of its latest entry).
    With --json: a list of {"agent_id", "entries", "first_seq", "last_seq",
    "last_activity", "chain_head"}. Records that are not LedgerEntry are skipped with a
    warning on stderr. Exit status 0, or 2 when Kafka or the topic cannot be reached.
    """
    from ledgerstream.core import config
    from ledgerstream.core.errors import ConfigError
    from ledgerstream.tools.agents import read_entries, summarize

    try:
        bootstrap = config.resolve_bootstrap(bootstrap)
        entries, bad = read_entries(bootstrap, topic or config.resolve_topics().entries, timeout)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    rows = [row.as_dict() for row in summarize(entries)]
    if bad:
        info(f"skipped {bad} records that are not LedgerEntry")
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table("agent", "entries", "seq", "last activity (UTC)", "chain head")
    for row in rows:
        table.add_row(Text(safe_text(row["agent_id"])), str(row["entries"]), f"{row['first_seq']}..{row['last_seq']}",
                      row["last_activity"], row["chain_head"][:16] + "...")
    Console().print(table)
    if not rows:
        info("the ledger has no entries yet")
