"""``ledgerstream agents``: every agent in the ledger with its chain head."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ledgerstream.cli.common import (EXIT_USAGE, bootstrap_option, fail, home_option, info, json_option, print_json,
                                     resolve_home, safe_text)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--topic", default=None,
              help="Entries topic [default: the dev stack's or $LEDGERSTREAM_TOPIC_PREFIX]; given, the ledger index "
                   "and the checkpoints topic are not used.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also trust this signer public key PEM (besides HOME/keys/signer.pub.pem and HOME/keys/trusted/*.pem).")
@click.option("--wait", type=click.FloatRange(min=0), default=30.0, show_default=True, metavar="SECONDS",
              help="With a ledger index: how long to wait for it to reach the ledger's newest entry.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds allowed for reading the ledger (kept for "
                                                                  "compatibility; reads stop at the topic's end).")
@bootstrap_option
@home_option
@json_option
def agents(topic: str | None, trusted_keys: tuple[Path, ...], wait: float, timeout: float, bootstrap: str | None,
           home: Path | None, as_json: bool) -> None:
    """List the agents in the ledger with their chain heads.

    Only entries of the ledger count (decodes, hash recomputes, signed by a trusted signer
    key, continues the chain: the core Checker's rule): from the ledger index when HOME has
    one, else from one read of the entries and checkpoints topics. Records that are not
    entries (forks, copies, another key, undecodable bytes) are counted on stderr.

    Per agent: number of entries, first and last ledger seq, last activity (when its
    latest entry's action happened, UTC) and chain head (hex entry_hash of its latest
    entry). With --json: a list of {"agent_id", "entries", "first_seq", "last_seq",
    "last_activity", "chain_head"}. Exit status 0, or 2 when Kafka, the topic or a trusted
    signer key is missing.
    """
    from ledgerstream.core import config
    from ledgerstream.core.errors import ConfigError
    from ledgerstream.core.verify import CheckerConfig
    from ledgerstream.index import query
    from ledgerstream.index.reads import NotIndexed, open_for
    from ledgerstream.index.status import newest_seq
    from ledgerstream.tools.agents import from_index, ledger_entries, summarize
    from ledgerstream.core.verify import TrustedKeys

    del timeout  # reads end at the topic's end; the option stays for scripts that pass it
    home_dir = resolve_home(home)
    try:
        bootstrap = config.resolve_bootstrap(bootstrap, home_dir)
        keys = TrustedKeys.load(home_dir, trusted_keys)
        topics = config.resolve_topics(home_dir)
        trust = CheckerConfig(trusted_keys=dict(keys.by_id))
        ix = None if topic else open_for(home_dir, bootstrap, topics)
        if ix is not None and ix.config is not None and set(keys.by_id) <= set(ix.config.trusted_keys):
            try:
                newest = newest_seq(bootstrap, topics, trust)
                if newest is not None:
                    ix.require(lambda: query.indexed_size(ix.conn) > newest, f"the ledger's newest entry ({newest})",
                               newest, wait)
                rows = [row.as_dict() for row in from_index(ix.conn)]
                foreign = query.foreign_count(ix.conn, "entries")
            finally:
                ix.close()
        else:
            if topic:
                topics = dataclasses.replace(topics, entries=topic)
            entries, foreign = ledger_entries(bootstrap, topics, trust, with_checkpoints=not topic)
            rows = [row.as_dict() for row in summarize(entries)]
    except NotIndexed as exc:
        fail(str(exc), 1)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    if foreign:
        info(f"{foreign} record(s) on the entries topic are not entries of this ledger (not counted)")
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
