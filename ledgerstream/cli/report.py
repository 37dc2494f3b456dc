"""``ledgerstream report``: a compliance evidence report over a period (HTML, PDF, JSON).

Exit status: 0 the ledger verifies, 1 verification found problems (the report is still
written and says so), 2 usage or environment (Kafka, keys, Chromium for --pdf, no TSA CA).
"""
from __future__ import annotations

import re
import sys
from functools import partial
from pathlib import Path

import click

from ledgerstream.cli.common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, bootstrap_option, fail, home_option, info,
                                     print_json, resolve_home)
from ledgerstream.cli.verify import trust_options


def _time(value: str | None, flag: str) -> int | None:
    from ledgerstream.tools.replay import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def _duration_us(value: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", value)
    if not m or int(m.group(1)) == 0:
        raise click.BadParameter(f"{value!r} is not a positive duration like 30m, 1h, 2d", param_hint="--quiet-gap")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)] * 1_000_000


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--framework", required=True, type=click.Choice(["eu-ai-act"]),
              help="Which regulation to map the evidence to (Regulation (EU) 2024/1689, the AI Act).")
@click.option("--from", "since", metavar="T", help="Period start (received_at >= T): ISO 8601 (UTC if no zone) "
                                                  "or a duration ago (15m, 2h, 7d) [the ledger's beginning].")
@click.option("--to", "until", metavar="T", help="Period end, exclusive (same forms as --from) [now].")
@click.option("--agent", "agents", multiple=True, metavar="ID", help="Only this agent's entries (repeatable).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (self-contained, works offline).")
@click.option("--pdf", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also print the HTML to this PDF with headless Chromium.")
@click.option("--bundle", "bundle_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Evidence bundle ZIP to write and link [next to --out: NAME.bundle.zip].")
@click.option("--quiet-gap", default="1h", show_default=True, metavar="DURATION",
              help="Report intervals without any recorded event longer than this (Article 12).")
@click.option("--chromium", default=None, metavar="PATH",
              help="Chromium binary for --pdf [$LEDGERSTREAM_CHROMIUM, else chromium on PATH].")
@click.option("--json", "as_json", is_flag=True, help="Print the evidence as JSON on stdout (docs/report.md).")
@trust_options
@bootstrap_option
@home_option
def report(framework: str, since: str | None, until: str | None, agents: tuple[str, ...], out: Path,
           pdf: Path | None, bundle_out: Path | None, quiet_gap: str, chromium: str | None, as_json: bool,
           trusted_keys: tuple[Path, ...], tsa_ca: Path | None, policy: Path | None, bootstrap: str | None,
           home: Path | None) -> None:
    """Write an evidence report for a period of the ledger, mapped to articles of the EU AI Act:
    12 (record-keeping), 14 (human oversight), 15 (accuracy, robustness, cybersecurity),
    19 and 26(6) (keeping logs at least six months) and 73 (serious incidents).

    Every statement carries its evidence: counts, the covering checkpoint (tree size, root,
    RFC 3161 time), verifier findings and alerts, the entries topic's retention settings,
    and an offline-verifiable evidence bundle of the period written next to the HTML.
    Verification covers the whole ledger (a chain is verified from its start); counts,
    charts, agents and the bundle cover the period. This is evidence, not a legal opinion.

    Exit status: 0 the ledger verifies, 1 verification found problems (the report is
    still written and says so), 2 usage or environment error.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ledgerstream.core import config
    from ledgerstream.core.errors import ConfigError
    from ledgerstream.tools.ledger_reader import end_offsets
    from ledgerstream.core.verify import TrustedKeys, tsa_ca as find_tsa_ca
    from ledgerstream.tools.report import build, render
    from ledgerstream.tools.report.evidence import Period
    from ledgerstream.core.verify import checker_config

    try:
        period = Period(_time(since, "--from"), _time(until, "--to"), agents)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None
    quiet_us = _duration_us(quiet_gap)
    bundle_out = bundle_out or out.with_name(f"{out.stem}.bundle.zip")
    try:
        chromium_path = render.find_chromium(chromium) if pdf is not None else None
        home_dir = resolve_home(home)
        request = build.Request(
            bootstrap=config.resolve_bootstrap(bootstrap, home_dir), topics=config.resolve_topics(home_dir),
            checker=checker_config(home_dir, trusted_keys=trusted_keys, tsa_ca_path=tsa_ca, policy=policy),
            keys=TrustedKeys.load(home_dir, trusted_keys), tsa_ca=find_tsa_ca(home_dir, tsa_ca), period=period,
            bundle_out=bundle_out, quiet_threshold_us=quiet_us)
        for path in (out, pdf, bundle_out):
            if path is not None and not path.resolve().parent.is_dir():
                raise ConfigError(f"folder {path.resolve().parent} does not exist")
        console = Console(stderr=True)
        with Progress(TextColumn("reading"), BarColumn(), MofNCompleteColumn(), console=console, transient=True,
                      disable=not console.is_terminal) as bar:
            total = sum(end_offsets(request.bootstrap, request.topics).values())
            task = bar.add_task("read", total=total or None)
            evidence = build.gather(request, partial(console.print, markup=False, highlight=False, soft_wrap=True),
                                    lambda n: bar.advance(task, n))
        doc = build.document(evidence)
        info(f"writing {out}")
        try:
            out.write_text(render.render_html(doc, out), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from exc
        if pdf is not None and chromium_path is not None:
            info(f"printing {pdf} with {chromium_path}")
            render.print_pdf(out, pdf, chromium_path)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    if as_json:
        print_json(doc)
    else:
        _print_human(doc, out, pdf)
    if doc["verification"]["stats"].get("timestamps_unverified"):
        fail(f"{doc['verification']['stats']['timestamps_unverified']} timestamp tokens could not be checked: "
             "no TSA CA (pass --tsa-ca)", EXIT_USAGE)
    if not doc["ok"]:
        info(f"verification found {doc['ledger']['errors']} problem(s); the report says so")
    sys.exit(EXIT_OK if doc["ok"] else EXIT_FAILED)


def _print_human(doc: dict, out: Path, pdf: Path | None) -> None:
    click.echo(f"report:   {out}" + (f" and {pdf}" if pdf else ""))
    bundle = doc["bundle"]
    if bundle["path"]:
        click.echo(f"bundle:   {bundle['path']} (sha256 {bundle['sha256']})")
        click.echo(f"          verify with: {bundle['verify_command']}")
    else:
        click.echo(f"bundle:   none ({bundle['reason']})")
    click.echo(f"ledger:   {doc['ledger']['entries']} entries, " + ("verifies" if doc["ok"] else
                                                                  f"{doc['ledger']['errors']} problem(s)"))
    for a in doc["articles"]:
        click.echo(f"Art. {a['article']:10} {a['status']:9} {a['title']}")
