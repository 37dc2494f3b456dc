"""``ledgerstream verifiers status`` and ``ledgerstream verifier run``."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ledgerstream.cli.common import (EXIT_FAILED, EXIT_OK, bootstrap_option, home_option, info, json_option,
                                     print_json, resolve_home)
from ledgerstream.cli.verify import trust_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def verifiers() -> None:
    """The verifiers running against this home (their status files)."""


@verifiers.command()
@home_option
@json_option
def status(home: Path | None, as_json: bool) -> None:
    """Position, lag, last verified checkpoint and health of every verifier, from
    HOME/verifiers/<id>/status.json. Exit 1 unless every verifier is healthy and fresh."""
    from ledgerstream.tools.dashboard.status_files import verifiers as read_status

    rows = read_status(resolve_home(home))
    if as_json:
        print_json(rows)
    elif not rows:
        info("no verifier has written a status yet (ledgerstream verifier run --id ID)")
    else:
        click.echo(f"{'id':8} {'position':>9} {'lag':>6} {'checkpoint':>10}  {'health':10} alerts")
        for r in rows:
            cp = (r["last_checkpoint"] or {}).get("tree_size", "-")
            lag = "-" if r["lag"] is None else r["lag"]
            alerts = ", ".join(f"{k}={v}" for k, v in sorted((r["alerts"] or {}).items())) or "none"
            click.echo(f"{r['id']:8} {r['position'] if r['position'] is not None else '-':>9} {lag:>6} {cp:>10}  "
                       f"{r['health']:10} {alerts}")
    sys.exit(EXIT_OK if rows and all(r["health"] == "healthy" for r in rows) else EXIT_FAILED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def verifier() -> None:
    """Run one verifier."""


@verifier.command(context_settings={"ignore_unknown_options": False})
@click.option("--id", "verifier_id", required=True, help="Verifier id: its consumer group and state folder.")
@click.option("--reverify", is_flag=True, help="Forget the saved state and verify from the first entry.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Prometheus port (0: any free port).")
@click.option("--topic-prefix", default=None, help="Topic prefix [the dev stack's].")
@trust_options
@bootstrap_option
@home_option
def run(verifier_id: str, reverify: bool, metrics_port: int, topic_prefix: str | None,
        trusted_keys: tuple[Path, ...], tsa_ca: Path | None, policy: Path | None, bootstrap: str | None,
        home: Path | None) -> None:
    """Run verifier ID in the foreground (Ctrl-C stops it); it resumes from its saved state.
    All worker options: python -m ledgerstream.verifier_worker --help."""
    from ledgerstream.verifier_worker.__main__ import main

    argv = ["--id", verifier_id, "--home", str(resolve_home(home)), "--metrics-port", str(metrics_port)]
    argv += ["--reverify"] if reverify else []
    argv += ["--topic-prefix", topic_prefix] if topic_prefix is not None else []
    argv += ["--bootstrap", bootstrap] if bootstrap else []
    argv += ["--tsa-ca", str(tsa_ca)] if tsa_ca else []
    argv += ["--policy", str(policy)] if policy else []
    for key in trusted_keys:
        argv += ["--trusted-key", str(key)]
    sys.exit(main(argv))
