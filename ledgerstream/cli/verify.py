"""``ledgerstream verify``: verify the whole ledger in Kafka once (exit 0 only when intact)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ledgerstream.cli.common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, bootstrap_option, home_option, info,
                                     json_option, print_json, resolve_home, safe_text)


def trust_options(f):  # type: ignore[no-untyped-def]
    """--trusted-key, --tsa-ca, --policy: what a verifier trusts (shared with ``verifier run``)."""
    f = click.option("--policy", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Policy file whose 'approvals' section names the approvers [HOME/policy.yaml if present].")(f)
    f = click.option("--tsa-ca", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="TSA CA bundle PEM for timestamp tokens [HOME/tsa/ca.pem].")(f)
    return click.option("--trusted-key", "trusted_keys", multiple=True,
                        type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        help="Also trust this signer public key PEM (repeatable) "
                             "[HOME/keys/signer.pub.pem, HOME/keys/trusted/*.pem].")(f)


def link_grace_options(f):  # type: ignore[no-untyped-def]
    """--link-grace-seconds, --link-grace-entries: how long a pending cross-agent link may wait."""
    f = click.option("--link-grace-entries", type=click.IntRange(min=0), default=10_000, show_default=True,
                     help="Entries a pending link may wait for its target.")(f)
    return click.option("--link-grace-seconds", type=click.FloatRange(min=0), default=300.0, show_default=True,
                        help="Ledger time a pending link may wait for its target.")(f)


@click.command()
@trust_options
@link_grace_options
@click.option("--peer-prefix", "peer_prefixes", multiple=True,
              help="Topic prefix of another copy of this ledger (a mirror, a second cluster) whose checkpoints "
                   "must agree with this one: any checkpoint our signer signed there with another root is a "
                   "split_view finding. Repeatable.")
@bootstrap_option
@home_option
@json_option
def verify(trusted_keys: tuple[Path, ...], tsa_ca: Path | None, policy: Path | None, link_grace_seconds: float,
           link_grace_entries: int, peer_prefixes: tuple[str, ...], bootstrap: str | None, home: Path | None,
           as_json: bool) -> None:
    """Verify the ledger end to end: the hash chain, every agent's chain, every entry
    signature, every checkpoint (signature, Merkle root, consistency), every timestamp
    token, cross-agent links and approvals. Findings use the alert taxonomy (docs/alerts.md).

    Exit status: 0 intact, 1 findings (see "errors"), 2 environment (Kafka, keys, or
    timestamp tokens that cannot be checked without a TSA CA).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ledgerstream.core import config
    from ledgerstream.tools.ledger_reader import end_offsets
    from ledgerstream.verifier_worker.oneshot import verify_ledger
    from ledgerstream.core.verify import checker_config

    home_dir = resolve_home(home)
    cfg = checker_config(home_dir, trusted_keys=trusted_keys, tsa_ca_path=tsa_ca, policy=policy,
                         link_grace_seconds=link_grace_seconds, link_grace_entries=link_grace_entries)
    server = config.resolve_bootstrap(bootstrap, home_dir)
    topics = config.resolve_topics(home_dir)
    total = sum(end_offsets(server, topics).values())
    console = Console(stderr=True)
    columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("verify", total=total or None)
        report = verify_ledger(server, topics, cfg, progress=lambda n: bar.advance(task, n),
                               peer_topics=[config.Topics.with_prefix(p) for p in peer_prefixes])
    doc = report.to_json()
    if as_json:
        print_json(doc)
    else:
        _print_human(doc)
    if report.checker.stats.timestamps_unverified:
        info(f"error: {report.checker.stats.timestamps_unverified} timestamp tokens could not be checked: "
             "no TSA CA (pass --tsa-ca)")
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


def _print_human(doc: dict) -> None:
    cp = doc["last_checkpoint"]
    click.echo(f"entries:     {doc['entries']}")
    click.echo(f"checkpoints: {doc['checkpoints']} verified"
               + (f" (latest covers {cp['tree_size']} entries)" if cp else ""))
    click.echo(f"timestamps:  {doc['timestamps']} verified")
    w = doc["witnesses"]
    if w["cosigned"]:
        click.echo(f"witnessed:   up to tree size {w['witnessed_size']} ({w['quorum']} of {len(w['cosigned'])} "
                   "witnesses: " + ", ".join(f"{c['witness']} at {c['tree_size']}" for c in w["cosigned"]) + ")")
    for f in doc["errors"] + doc["warnings"]:
        where = "" if f["seq_from"] is None else f" seq {f['seq_from']}" + (
            f"..{f['seq_to']}" if f["seq_to"] != f["seq_from"] else "")
        click.echo(safe_text(f"{f['severity'].upper():8} {f['kind']}{where}: {f['detail']}"))
    click.echo("OK: the ledger verifies" if doc["ok"] else f"FAILED: {len(doc['errors'])} finding(s)")
