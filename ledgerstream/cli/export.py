"""``ledgerstream export``: send the ledger elsewhere (``siem``: a SIEM feed, docs/siem.md)."""
from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from ledgerstream.cli.alerts import resolve_trusted_verifiers, trusted_verifier_key_option
from ledgerstream.cli.common import bootstrap_option, home_option, info, resolve_home
from ledgerstream.core import config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def export() -> None:
    """Export ledger data: a streaming SIEM feed, or an evidence bundle."""


def _header(value: str) -> tuple[str, str]:
    name, sep, val = value.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"expected 'Name: value', got {value!r}", param_hint="--header")
    return name.strip(), val.strip()


@export.command()
@click.option("--format", "fmt_name", required=True, type=click.Choice(["ecs", "cef", "ocsf", "syslog"]),
              help="Elastic ECS JSON, ArcSight CEF, OCSF JSON, or RFC 5424 syslog.")
@click.option("--output", "-o", default="-", show_default=True, metavar="-|FILE|syslog+tcp://HOST:PORT|https://URL",
              help="Where to send the lines; a write counts only once the destination acknowledged it.")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming new entries and alerts (Ctrl-C stops).")
@click.option("--only", type=click.Choice(["entries", "alerts"]), default=None, help="Export one stream only.")
@click.option("--group", default=None, metavar="ID",
              help="Kafka consumer group; its committed offsets are where the export resumes [<prefix>siem-<format>].")
@click.option("--from-beginning", is_flag=True,
              help="Ignore the group's committed position once and re-export everything.")
@click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="Extra HTTP header for https:// outputs (repeatable), e.g. 'Authorization: ApiKey ...'.")
@click.option("--buffer", "buffer_size", default=5000, show_default=True, type=click.IntRange(1),
              help="Records held between Kafka and a slow sink before the consumer pauses.")
@click.option("--batch", "batch_size", default=500, show_default=True, type=click.IntRange(1),
              help="Records per sink write.")
@click.option("--give-up-after", default=None, type=click.FloatRange(0), metavar="SECONDS",
              help="Stop (exit 2) when the sink stays down this long [retry forever].")
@click.option("--topic-prefix", default=None, help="Topic name prefix [the dev stack's, or $LEDGERSTREAM_TOPIC_PREFIX].")
@trusted_verifier_key_option
@home_option
@bootstrap_option
def siem(fmt_name: str, output: str, follow: bool, only: str | None, group: str | None, from_beginning: bool,
         headers: tuple[str, ...], buffer_size: int, batch_size: int, give_up_after: float | None,
         topic_prefix: str | None, trusted_verifier_keys: tuple[str, ...], home: Path | None,
         bootstrap: str | None) -> None:
    """Stream ledger entries and verifier alerts to a SIEM, at least once.

    Offsets are committed only after the sink acknowledged the records (flush+fsync for
    files, TCP ACK for syslog, 2xx for HTTPS), so a restart resumes where the last
    acknowledged record was; a dead sink is retried with backoff and loses nothing.
    Without --follow, exports what exists now and exits. Every alert is marked with its
    authenticity (verified | unsigned | forged) under the trusted verifier keys (docs/spec.md section 10),
    every entry with its authenticity under HOME's trusted signer keys: verified (its signature
    verifies), unsigned (checkpoint signing mode), forged (rejected by the core's checks: another
    key, a bad signature, tampered bytes) or unchecked (no trusted signer key); only a verified
    entry has signed=true.
    """
    from ledgerstream.index.reads import trust_of
    from ledgerstream.tools.siem.exporter import ExportSettings, Exporter, default_group
    from ledgerstream.tools.siem.formats import get_format
    from ledgerstream.tools.siem.sinks import open_sink

    home_dir = resolve_home(home)
    topics = config.Topics.with_prefix(topic_prefix) if topic_prefix is not None else config.resolve_topics(home_dir)
    trusted = resolve_trusted_verifiers(home_dir, trusted_verifier_keys) if only != "entries" else {}
    signers = trust_of(home_dir) if only != "alerts" else None
    if signers is None and only != "alerts":
        info(f"warning: no trusted signer key in {home_dir / 'keys'}: entries are exported with "
             "authenticity 'unchecked' (none is called signed)")
    fmt = get_format(fmt_name)
    if headers and not output.startswith(("https://", "http://")):
        raise click.BadParameter("--header only applies to https:// outputs", param_hint="--header")
    if batch_size > buffer_size:
        raise click.BadParameter(f"--batch ({batch_size}) must not exceed --buffer ({buffer_size})", param_hint="--batch")
    try:
        sink = open_sink(output, media_type=fmt.media_type, headers=dict(_header(h) for h in headers))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--output") from exc
    settings = ExportSettings(
        bootstrap=config.resolve_bootstrap(bootstrap, home_dir), topics=topics,
        group=group or default_group(topics, fmt_name), streams=(only,) if only else ("entries", "alerts"),
        follow=follow, from_beginning=from_beginning, batch_size=batch_size, buffer_size=buffer_size,
        give_up_after=give_up_after, trusted_verifiers=trusted, trusted_signers=signers)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    info(f"exporting {'/'.join(settings.streams)} as {fmt_name} to {sink.describe()} "
         f"(group {settings.group}{', following' if follow else ''})")
    stats = Exporter(settings, fmt, sink, log=info).run(stop)
    info(f"exported {stats.entries} entries and {stats.alerts} alerts"
         + (f" ({stats.undecodable} undecodable records as alerts)" if stats.undecodable else "")
         + (f"; {stats.forged} alert(s) NOT from a trusted verifier, marked forged/unsigned" if stats.forged else "")
         + (f"; {stats.forged_entries} entr(y/ies) rejected by the core (another key, bad signature, tampered), "
            "marked forged" if stats.forged_entries else "")
         + f"; committed {stats.committed or 'nothing new'}")


def _register_bundle() -> None:
    from ledgerstream.cli.bundle import export_bundle

    export.add_command(export_bundle, "bundle")


_register_bundle()
