"""``ledgerstream emit``: record one action from the shell (scripts, cron jobs, tests)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ledgerstream.cli.common import EXIT_USAGE, bootstrap_option, fail, info, json_option, print_json


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("action_type")
@click.option("--agent", "agent_id", required=True, metavar="ID", help="Agent id the event is recorded for.")
@click.option("--payload", default="{}", show_default=True, metavar="JSON",
              help="The action's payload: a JSON object (use @FILE to read it from a file).")
@click.option("--session", default=None, metavar="S", help="Session id to record the event under.")
@click.option("--link", "links", multiple=True, metavar="AGENT:EVENT",
              help="Causal link to another agent's event (AGENT:EVENT_ID or a link token); repeatable.")
@click.option("--hash-only", is_flag=True, help="Send only the salted payload commitment, not the payload.")
@click.option("--spool", "spool_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Spool root [default: $LEDGERSTREAM_HOME/spool].")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for Kafka before spooling.")
@bootstrap_option
@json_option
def emit(action_type: str, agent_id: str, payload: str, session: str | None, links: tuple[str, ...],
         hash_only: bool, spool_dir: Path | None, timeout: float, bootstrap: str | None, as_json: bool) -> None:
    """Record ACTION_TYPE (e.g. tool:search) for agent ID and print its event id.

    Waits up to --timeout for Kafka to acknowledge the event; if Kafka is unreachable the
    event stays in the agent's spool ("spooled": true) and 'ledgerstream sync' delivers it
    later. Either way the event is safely recorded and the exit status is 0; 2 means bad
    input (malformed action type, payload not a JSON object).
    """
    from ledgerstream.producers.ledger import connect

    if payload.startswith("@"):
        try:
            payload = Path(payload[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read payload file {payload[1:]}: {exc.strerror or exc}", EXIT_USAGE)
    try:
        data = json.loads(payload)
    except ValueError as exc:
        fail(f"--payload is not JSON: {exc}", EXIT_USAGE)
    try:
        ledger = connect(agent_id, bootstrap, spool_dir=spool_dir)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        try:
            event_id = ledger.emit(action_type, data, links=list(links), session=session, hash_only=hash_only)
        except (TypeError, ValueError) as exc:
            fail(str(exc), EXIT_USAGE)
        undelivered = ledger.flush(timeout) if ledger.bootstrap else 1
    finally:
        ledger.close(timeout=2.0)
    delivered = undelivered == 0
    if as_json:
        print_json({"event_id": event_id, "agent_id": agent_id, "action_type": action_type,
                    "delivered": delivered, "spooled": not delivered})
    else:
        click.echo(event_id)
        if not delivered:
            info("Kafka did not acknowledge the event in time; it is kept in the spool "
                 "(run 'ledgerstream sync' once Kafka is reachable)")
