"""``ledgerstream approvals list`` and ``ledgerstream approve``: the approver's side of m-of-n
approvals (docs/approvals.md)."""
from __future__ import annotations

from pathlib import Path

import click

from ledgerstream.cli.common import (EXIT_FAILED, EXIT_USAGE, bootstrap_option, fail, info, json_option, print_json,
                                     safe_text)


def _where(bootstrap: str | None, topic: str | None) -> tuple[str, str]:
    from ledgerstream.core import config

    return config.resolve_bootstrap(bootstrap), topic or config.resolve_topics().approvals


topic_option = click.option("--topic", default=None,
                            help="Approvals topic [default: the dev stack's or $LEDGERSTREAM_TOPIC_PREFIX].")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def approvals() -> None:
    """Approval requests that agents are waiting on (m-of-n, ML-DSA-65 signed)."""


@approvals.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include answered and expired requests.")
@topic_option
@bootstrap_option
@json_option
def list_(show_all: bool, topic: str | None, bootstrap: str | None, as_json: bool) -> None:
    """Show pending approval requests (oldest first).

    A request is pending while it has not expired, has fewer than m approvals and not
    so many rejections that m is out of reach. "payload" is what the approver signs
    off (null when the agent runs in hash-only mode). Counts here are unverified: the
    agent checks every signature itself.
    """
    from ledgerstream.core.errors import ConfigError
    from ledgerstream.producers.approvals import read_requests, summary

    try:
        where = _where(bootstrap, topic)
        requests = read_requests(*where)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    rows = sorted((summary(r) for r in requests.values()), key=lambda r: r["requested_at"])
    if not show_all:
        rows = [r for r in rows if r["pending"]]
    if as_json:
        print_json(rows)
        return
    if not rows:
        info("no pending approval requests")
        return
    for r in rows:
        state = "pending" if r["pending"] else "closed"
        click.echo(safe_text(f"{r['request_id']}  {r['agent_id']}  {r['action_type']}  "
                   f"{len(r['approved_by'])}/{r['required']} approvals  {state}, expires in {r['expires_in_s']}s"))
        click.echo(safe_text(f"    event {r['event_id']}  rule {r['rule']}  payload {r['payload'] or '(hash only)'}"))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("request_id")
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Your ML-DSA-65 private key (from 'ledgerstream keys generate').")
@click.option("--approver-id", default=None, metavar="ID",
              help="Your approver id as configured in the agent's policy [default: the key file name "
                   "without .pem].")
@click.option("--reject", is_flag=True, help="Sign a rejection instead of an approval.")
@click.option("--comment", default=None, help="Free text sent with the answer (not signed).")
@topic_option
@bootstrap_option
@json_option
def approve(request_id: str, key_path: Path, approver_id: str | None, reject: bool, comment: str | None,
            topic: str | None, bootstrap: str | None, as_json: bool) -> None:
    """Sign REQUEST_ID (approve, or --reject) with your key and publish the answer.

    The signature covers the request id, your approver id, the decision, the time and
    the event it authorises (event id, agent, action type, payload commitment), exactly
    records.approval_message. It counts only if the agent's policy lists your approver id
    with the matching public key. Exit status 0 when published, 1 if the request is
    unknown or expired, 2 on usage errors.
    """
    from ledgerstream.core.errors import ConfigError, LedgerstreamError
    from ledgerstream.core.mldsa import load_private_key
    from ledgerstream.producers.approvals import APPROVE, REJECT, respond

    approver = approver_id or key_path.name.removesuffix(".pem")
    try:
        key = load_private_key(key_path)
        where = _where(bootstrap, topic)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        resp = respond(*where, request_id, key, approver, decision=REJECT if reject else APPROVE, comment=comment)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except LedgerstreamError as exc:
        fail(str(exc), EXIT_FAILED)
    result = {k: resp[k] for k in ("request_id", "approver_id", "key_id", "decision", "approved_at",
                                   "event_id", "agent_id", "action_type")}
    if as_json:
        print_json(result)
    else:
        click.echo(safe_text(f"{resp['decision']} {request_id} ({resp['action_type']} by {resp['agent_id']}) "
                   f"as {approver}, key {resp['key_id'][:16]}"))
