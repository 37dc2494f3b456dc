"""``ledgerstream sync``: deliver every agent's offline spool to Kafka."""
from __future__ import annotations

from pathlib import Path

import click

from ledgerstream.cli.common import EXIT_FAILED, EXIT_USAGE, bootstrap_option, fail, info, json_option, print_json


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--spool", "spool_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Spool root holding one folder per agent [default: $LEDGERSTREAM_HOME/spool].")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for Kafka to acknowledge.")
@bootstrap_option
@json_option
def sync(spool_dir: Path | None, timeout: float, bootstrap: str | None, as_json: bool) -> None:
    """Send every undelivered event in every spool under the spool root to Kafka.

    Each agent's events go out in the order they were recorded. Spools in use by a live
    process (an agent sending its own, or another sync) are skipped and counted as
    "busy". Corrupt spool segments are moved to quarantine/ and counted. Running sync
    twice is harmless (the second run finds nothing to send).

    Prints {"agents", "sent", "remaining", "quarantined", "busy", "unreadable"}
    ("unreadable": spools that cannot be opened, e.g. a damaged spool.json; their events
    are counted in "remaining" and not sent). Exit status: 0 when everything was delivered
    and nothing was damaged; 1 when events remain (Kafka unreachable or too slow, or an
    unreadable spool) or anything was quarantined; 2 on usage or environment errors.
    """
    from rich.console import Console
    from rich.progress import Progress

    from ledgerstream.core import config
    from ledgerstream.core.errors import ConfigError
    from ledgerstream.producers.spool import default_root
    from ledgerstream.producers.sync import sync_spools

    try:
        bootstrap = config.resolve_bootstrap(bootstrap)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    root = spool_dir or default_root()
    with Progress(transient=True, console=Console(stderr=True)) as progress:
        task = progress.add_task("syncing spools", total=None)
        report = sync_spools(root, bootstrap, config.resolve_topics().actions, timeout=timeout,
                             progress=lambda done, total: progress.update(task, completed=done, total=total))
    stuck = sum(u["events"] for u in report.unreadable)
    result = {"agents": report.agents, "sent": report.sent, "remaining": report.remaining + stuck,
              "quarantined": report.quarantined, "busy": report.busy, "unreadable": len(report.unreadable)}
    if as_json:
        print_json({**result, "spool": str(root), "spools": report.spools, "unreadable_spools": report.unreadable})
    else:
        click.echo(" ".join(f"{k}={v}" for k, v in result.items()))
        for spool in report.spools:
            for path in spool["quarantined"]:
                info(f"quarantined damaged segment of {spool['agent_id']}: {path}")
    for bad in report.unreadable:
        info(f"error: spool {bad['path']} cannot be opened ({bad['error']}); its {bad['events']} events were not sent")
    if report.remaining:
        info(f"{report.remaining} events remain in {root}; is Kafka at {bootstrap} reachable?")
    if report.quarantined:
        info(f"{report.quarantined} damaged spool segment(s) quarantined: see the quarantine/ folders")
    if not report.complete:
        raise SystemExit(EXIT_FAILED)

