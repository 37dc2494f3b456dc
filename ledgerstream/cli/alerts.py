"""``ledgerstream alerts``: read the verifiers' findings from the ``alerts`` topic."""
from __future__ import annotations

import datetime as dt
import json
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import click

from ledgerstream.cli.common import (bootstrap_option, home_option, info, json_option, print_json, resolve_home,
                                     safe_text)

if TYPE_CHECKING:
    from ledgerstream.core.alert_signature import VerifierKey

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """``90s``, ``15m``, ``2h``, ``7d``, ``1w`` (ago) or an ISO 8601 time (UTC if no zone)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    match = _DURATION.match(value.strip())
    if match:
        return now - dt.timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a duration (30s, 15m, 2h, 7d) nor an ISO time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def alert_rows(bootstrap: str, topic: str, *, since: dt.datetime | None, kinds: tuple[str, ...],
               follow: bool, stop: threading.Event | None = None,
               trusted: Mapping[str, "VerifierKey"] | None = None) -> Iterator[dict[str, Any]]:
    """Decoded alerts (JSON-ready) written at or after ``since``, of the given kinds, each
    marked ``authenticity`` (verified | unsigned | forged), ``forged`` (true unless verified)
    and ``authenticity_reason`` under the ``trusted`` verifier keys (default:
    ``trusted_verifier_keys`` of $LEDGERSTREAM_HOME: $LEDGERSTREAM_VERIFIER_KEYS or the dev stack's)."""
    from ledgerstream.core import config
    from ledgerstream.core.wire import codec
    from ledgerstream.core.alert_signature import check_alert, trusted_verifier_keys
    from ledgerstream.core.errors import DecodeError
    from ledgerstream.tools.ledger_reader import read_topic

    if trusted is None:
        trusted = trusted_verifier_keys(config.home())

    since_us = None if since is None else int(since.timestamp() * 1_000_000)
    since_ms = None if since_us is None else since_us // 1000
    for rec in read_topic(bootstrap, topic, since_ms=since_ms, follow=follow, stop=stop):
        try:
            _, alert = codec.decode(rec.value, expect="Alert")
        except DecodeError as exc:
            info(f"warning: skipping undecodable record {rec.partition}/{rec.offset} on {topic}: {exc}")
            continue
        if kinds and alert["kind"] not in kinds:
            continue
        if since_us is not None and alert["time"] < since_us:
            continue
        alert.update(check_alert(alert, trusted).fields())
        if alert.get("signature") is not None:
            alert["signature"] = bytes(alert["signature"]).hex()
        alert["time_iso"] = dt.datetime.fromtimestamp(alert["time"] / 1e6, dt.timezone.utc).isoformat()
        yield alert


def trusted_verifier_key_option(f: Any) -> Any:
    """``--trusted-verifier-key`` (repeatable): the verifier public keys whose alert signatures
    are trusted (shared by ``alerts``, ``dashboard`` and ``export siem``)."""
    return click.option(
        "--trusted-verifier-key", "trusted_verifier_keys", multiple=True, metavar="[ID=]PEM",
        help="Trust this verifier public key for alert signatures (repeatable); a file named "
             "verifier-<ID>.pub.pem, or ID=PEM [$LEDGERSTREAM_VERIFIER_KEYS, os.pathsep-separated, "
             "else HOME/keys/verifier-*.pub.pem].")(f)


def resolve_trusted_verifiers(home: Path, explicit: tuple[str, ...]) -> dict[str, "VerifierKey"]:
    """``alert_signature.trusted_verifier_keys`` with a usage error for a bad key and a warning
    when no key is trusted (then no alert can be verified)."""
    from ledgerstream.core.alert_signature import ENV_VERIFIER_KEYS, trusted_verifier_keys
    from ledgerstream.core.errors import ConfigError

    try:
        trusted = trusted_verifier_keys(home, explicit)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--trusted-verifier-key or $" + ENV_VERIFIER_KEYS) from exc
    if not trusted:
        info(f"warning: no trusted verifier keys (--trusted-verifier-key, ${ENV_VERIFIER_KEYS} or "
             f"{home / 'keys'}/verifier-*.pub.pem): no alert can be verified, all show as forged or unsigned")
    return trusted


@click.command()
@click.option("--since", default=None, metavar="DURATION|ISO",
              help="Only alerts from this long ago (30s, 15m, 2h, 7d) or since this ISO time.")
@click.option("--kind", "kinds", multiple=True, metavar="KIND", help="Only this kind (repeatable; docs/alerts.md).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new alerts as they arrive (Ctrl-C to stop).")
@trusted_verifier_key_option
@bootstrap_option
@home_option
@json_option
def alerts(since: str | None, kinds: tuple[str, ...], follow: bool, trusted_verifier_keys: tuple[str, ...],
           bootstrap: str | None, home: Path | None, as_json: bool) -> None:
    """List the verifiers' alerts, oldest first. With --json: a JSON list (with --follow:
    one JSON object per line). Each alert has kind, severity, verifier_id, seq_from,
    seq_to, agent_id, detail, evidence, time (µs since the epoch, and time_iso), key_id,
    signature (hex) and its authenticity: "authenticity" (verified | unsigned | forged),
    "forged" (true unless verified: every genuine verifier signs) and "authenticity_reason".
    Human output marks alerts that are not verified with FORGED or UNSIGNED."""
    from ledgerstream.core import config
    from ledgerstream.core.verify import Kind

    unknown = sorted(set(kinds) - {k.value for k in Kind})
    if unknown:
        raise click.BadParameter(f"unknown kind(s) {unknown}; see docs/alerts.md", param_hint="--kind")
    home_dir = resolve_home(home)
    server = config.resolve_bootstrap(bootstrap, home_dir)
    topic = config.resolve_topics(home_dir).alerts
    trusted = resolve_trusted_verifiers(home_dir, trusted_verifier_keys)
    rows = alert_rows(server, topic, since=parse_since(since) if since else None, kinds=kinds, follow=follow,
                      trusted=trusted)
    if follow:
        for row in rows:
            click.echo(json.dumps(row, default=str) if as_json else _line(row))
        return
    ordered = sorted(rows, key=lambda r: (r["time"], r["verifier_id"]))
    if as_json:
        print_json(ordered)
        return
    for row in ordered:
        click.echo(_line(row))
    forged = [r for r in ordered if r["forged"]]
    info(f"{len(ordered)} alert(s)" + (f", {len(forged)} NOT from a trusted verifier "
                                       f"({sum(r['authenticity'] == 'forged' for r in forged)} forged, "
                                       f"{sum(r['authenticity'] == 'unsigned' for r in forged)} unsigned)"
                                       if forged else ""))


_MARK = {"forged": "FORGED", "unsigned": "UNSIGNED"}


def _line(row: dict[str, Any]) -> str:
    seq = "" if row["seq_from"] is None else f" seq {row['seq_from']}" + (
        f"..{row['seq_to']}" if row["seq_to"] not in (None, row["seq_from"]) else "")
    agent = f" agent {row['agent_id']}" if row.get("agent_id") else ""
    text = safe_text(f"{row['time_iso']} {row['verifier_id']:6} {row['severity'].upper():8} {row['kind']}{seq}{agent}: "
                     f"{row['detail']}")
    if not row.get("forged"):
        return text
    mark = f"!! {_MARK.get(row.get('authenticity'), 'FORGED')} ({row.get('authenticity_reason')}) !!"
    return click.style(mark, fg="red", bold=True) + " " + text
