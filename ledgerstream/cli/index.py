"""``ledgerstream index run`` and ``ledgerstream index status``: the ledger index (docs/index.md)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from ledgerstream.cli.common import (EXIT_OK, bootstrap_option, home_option, json_option, print_json,
                                     resolve_home)
from ledgerstream.cli.verify import link_grace_options, trust_options
from ledgerstream.core import config


def _paths_options(f):  # type: ignore[no-untyped-def]
    f = click.option("--index-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder of the index database, lock and status file [HOME/index].")(f)
    f = click.option("--tiles-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder of the C2SP tlog-tiles [HOME/tiles].")(f)
    return click.option("--topic-prefix", default=None, help="Topic prefix [the dev stack's].")(f)


def _topics(home: Path, topic_prefix: str | None):  # type: ignore[no-untyped-def]
    return config.Topics.with_prefix(topic_prefix) if topic_prefix is not None else config.resolve_topics(home)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def index() -> None:
    """The ledger index: SQLite rows and C2SP tiles of the verified ledger, kept by a follower."""


@index.command()
@click.option("--once", is_flag=True, help="Index up to the current end of the topics, then exit (tests, cron).")
@click.option("--reindex", is_flag=True, help="Delete the index and its tiles first and rebuild them from Kafka.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=5000, show_default=True,
              help="Records read, checked and committed together at most.")
@click.option("--checkpoint-read-ahead", type=click.IntRange(1, 100_000), default=config.CHECKPOINT_READ_AHEAD,
              show_default=True,
              help="Checkpoint-topic records held waiting for their entries before that topic is paused "
                   "(until the entries catch up): bounds memory and commit size while far behind.")
@click.option("--checkpoint-wait-seconds", type=click.FloatRange(min=0), default=config.CHECKPOINT_WAIT_SECONDS,
              show_default=True,
              help="Following, at the end of the entries: a checkpoint read this long ago that still waits for "
                   "entries claims entries the ledger lacks; it is reported (checkpoint_root_mismatch) and "
                   "the checkpoints behind it are judged. --once judges them at its end.")
@click.option("--threads", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Signature-check threads beside the one that decodes, re-hashes and chains.")
@click.option("--watchdog-seconds", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="Exit with status 4 after this long without progress (0: never).")
@click.option("--status-seconds", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="How often the status file is written.")
@click.option("--alert-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The index's own ML-DSA-65 private key PEM, that signs the alerts it publishes "
                   "[default: HOME/keys/verifier-index.pem if it exists; else findings are only logged].")
@click.option("--no-alerts", is_flag=True, help="Only log findings; do not publish them to the alerts topic.")
@link_grace_options
@_paths_options
@trust_options
@bootstrap_option
@home_option
def run(once: bool, reindex: bool, batch_size: int, checkpoint_read_ahead: int, checkpoint_wait_seconds: float,
        threads: int, watchdog_seconds: float, status_seconds: float, alert_key: Path | None, no_alerts: bool,
        link_grace_seconds: float, link_grace_entries: int, index_dir: Path | None, tiles_dir: Path | None,
        topic_prefix: str | None, trusted_keys: tuple[Path, ...], tsa_ca: Path | None, policy: Path | None,
        bootstrap: str | None, home: Path | None) -> None:
    """Follow entries and checkpoints and keep the index (foreground; SIGTERM / Ctrl-C stop
    after the current batch). It resumes from its last commit; killed at any moment, it
    resumes without gaps or duplicates. Trust defaults to the verifier's: HOME/keys/signer.pub.pem,
    HOME/keys/trusted/*.pem, HOME/tsa/ca.pem.

    Findings (foreign records, chain breaks, bad checkpoints) go to the alerts topic like a
    verifier's, signed with the index's key (verifier id "index"; Kafka role verifier).

    Exit status: 0 done or stopped, 2 configuration or environment, 4 watchdog, 70 a batch
    could not be indexed."""
    from ledgerstream.index.alerts import findings_hook
    from ledgerstream.index.follower import IndexSettings, run_follower
    from ledgerstream.index.paths import IndexPaths
    from ledgerstream.core.verify import checker_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    home_dir = resolve_home(home)
    server, topics = config.resolve_bootstrap(bootstrap, home_dir), _topics(home_dir, topic_prefix)
    on_findings, alerts_topic = findings_hook(home_dir, server, topics.alerts, alert_key, not no_alerts)
    settings = IndexSettings(
        home=home_dir, bootstrap=server, topics=topics, on_findings=on_findings, alerts_topic=alerts_topic,
        checker=checker_config(home_dir, trusted_keys=trusted_keys, tsa_ca_path=tsa_ca, policy=policy,
                               link_grace_seconds=link_grace_seconds, link_grace_entries=link_grace_entries),
        paths=IndexPaths.of(home_dir, index_dir=index_dir, tiles_dir=tiles_dir), once=once, reindex=reindex,
        batch_size=batch_size, checkpoint_read_ahead=checkpoint_read_ahead,
        checkpoint_wait_seconds=checkpoint_wait_seconds, threads=threads,
        status_seconds=status_seconds, watchdog_seconds=watchdog_seconds)
    sys.exit(run_follower(settings))


@index.command()
@_paths_options
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also trust this signer public key PEM when finding the newest genuine entry (repeatable).")
@bootstrap_option
@home_option
@json_option
def status(index_dir: Path | None, tiles_dir: Path | None, topic_prefix: str | None, trusted_keys: tuple[Path, ...],
           bootstrap: str | None, home: Path | None, as_json: bool) -> None:
    """How far the index is: indexed entries, lag behind Kafka, tiles, foreign records.

    JSON keys: indexed_size, lag (committed entries not yet indexed; null if Kafka cannot be
    reached), tiles_dir, foreign, tlog_url (the dev stack dashboard's /tlog/ URL serving these tiles, else null), tiles_size,
    findings, next_offset, last_checkpoint, follower (its status file) and more."""
    from ledgerstream.core.errors import ConfigError
    from ledgerstream.index.paths import IndexPaths
    from ledgerstream.index.status import index_status, served_tlog_url
    from ledgerstream.core.verify import checker_config

    home_dir = resolve_home(home)
    try:
        server: str | None = config.resolve_bootstrap(bootstrap, home_dir)
    except ConfigError:
        server = None
    try:
        cfg = checker_config(home_dir, trusted_keys=trusted_keys)
    except ConfigError:
        cfg = None  # no trusted key: the newest decodable entry counts
    paths = IndexPaths.of(home_dir, index_dir=index_dir, tiles_dir=tiles_dir)
    doc = index_status(paths, server, _topics(home_dir, topic_prefix), cfg, served_tlog_url(home_dir, paths))
    if as_json:
        print_json(doc)
        sys.exit(EXIT_OK)
    follower = doc["follower"] or {}
    state = "running" if follower.get("alive") else "not running"
    lag = "unknown (" + str(doc["kafka_error"]) + ")" if doc["lag"] is None else str(doc["lag"])
    click.echo(f"indexed:   {doc['indexed_size']} entries ({doc['db']}{'' if doc['exists'] else ', not created yet'})")
    click.echo(f"lag:       {lag}")
    click.echo(f"tiles:     {doc['tiles_size']} entries in {doc['tiles_dir']}")
    click.echo(f"foreign:   {doc['foreign']} records")
    findings = ", ".join(f"{k}={v}" for k, v in doc["findings"].items()) or "none"
    click.echo(f"findings:  {findings}")
    rate = follower.get("entries_per_second")
    click.echo(f"follower:  {state}" + (f", {rate} entries/s" if follower.get("alive") and rate is not None else ""))
    sys.exit(EXIT_OK)
