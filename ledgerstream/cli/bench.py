"""``ledgerstream bench``: one sub-command per benchmark; each lives in
``ledgerstream/tools/bench_<name>.py`` and returns a JSON-able dict that :func:`report`
prints and (with --out) writes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ledgerstream.cli.common import bootstrap_option, info, json_option, print_json

out_option = click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                          help="Also write the results as JSON to this file.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def bench() -> None:
    """Measure ledgerstream on this machine (results as JSON with --json / --out)."""


def report(result: dict[str, Any], as_json: bool, out: Path | None) -> None:
    """Print a benchmark result (JSON on stdout, or a short table) and write it to --out."""
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")
        info(f"results written to {out}")
    if as_json:
        print_json(result)
        return
    for name, row in result.get("scenarios", {}).items():
        fields = "  ".join(f"{k}={v}" for k, v in row.items())
        click.echo(f"{name:18} {fields}")
    if "goal" in result:
        click.echo(f"goal: {result['goal']}")


@bench.command()
@click.option("--events", default=20_000, show_default=True, type=click.IntRange(100),
              help="Events per scenario.")
@bootstrap_option
@out_option
@json_option
def producer(events: int, bootstrap: str | None, out: Path | None, as_json: bool) -> None:
    """Emit latency (p50/p99/p99.9, microseconds) and sustained events/s with the broker
    up, with it down (spool only) and at a steady 1,000/s, beside a bare confluent-kafka
    produce() loop as baseline and a noise floor (emit's CPU work alone, no threads).
    Uses private topics (deleted afterwards); without a configured Kafka it starts a
    private embedded broker."""
    from ledgerstream.core import config
    from ledgerstream.core.errors import ConfigError
    from ledgerstream.tools.bench_producer import run

    try:
        bootstrap = config.resolve_bootstrap(bootstrap)
    except ConfigError:
        bootstrap = None
    report(run(events, bootstrap, log=info), as_json, out)


@bench.command()
@click.option("--events", default=20_000, show_default=True, type=click.IntRange(100),
              help="Actions drained per backend and signing mode (the default is 10 entry-mode transactions of 2,000; checkpoint mode takes 10,000 per transaction: use 100000 for its steady state).")
@click.option("--latency-events", default=1000, show_default=True, type=click.IntRange(10),
              help="Actions produced at a steady rate to measure latency.")
@click.option("--backend", "backends", multiple=True, help="Only this ML-DSA backend (repeatable) [all available].")
@click.option("--profile", default=None, metavar="BACKEND", help="Also cProfile an in-process signer (to stderr).")
@click.option("--signing-nice", type=click.IntRange(-20, 19), default=None,
              help="The signers' --signing-nice (the entry-signing thread's priority) [the signer's default, -10]; "
                   "0 shows what the priority adds.")
@click.option("--compare", "compare_with", type=click.Choice(["tessera"]), default=None,
              help="Also measure Tessera v1.0.4's POSIX log on this machine (built with Go; issue 18's setup) "
                   "and report our checkpoint-mode entries/s against its appends/s.")
@click.option("--compare-seconds", default=20.0, show_default=True, type=click.FloatRange(2, 600),
              help="Tessera's measurement window.")
@out_option
@json_option
def signer(events: int, latency_events: int, backends: tuple[str, ...], profile: str | None,
           signing_nice: int | None, compare_with: str | None, compare_seconds: float, out: Path | None,
           as_json: bool) -> None:
    """Signer entries/s (drain) and produce-to-committed latency (paced), per ML-DSA backend
    and signing mode, beside the backend's raw sign rate, on a private embedded broker; then
    the Kafka floor: the same drain through the signer's transactional loop with no ledger
    work (tools/kafka_relay.py). See docs/benchmarks-signer.md for what each number measures."""
    from rich.console import Console

    from ledgerstream.tools import bench_tessera
    from ledgerstream.tools.bench_signer import render, run

    result = run(events, latency_events=latency_events, backends=list(backends) or None, profile=profile,
                 signing_nice=signing_nice, log=info)
    if compare_with == "tessera":
        ours = max((row["modes"]["checkpoint"]["entries_per_s"] for row in result["backends"].values()
                    if "checkpoint" in row["modes"]), default=0)
        result["compare"] = bench_tessera.compare(ours, bench_tessera.run(compare_seconds, log=info))
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")
        info(f"results written to {out}")
    if as_json:
        print_json(result)
    else:
        console = Console()
        render(result, console if console.is_terminal else Console(width=150))


@bench.command()
@click.option("--entries", default=60_000, show_default=True, type=click.IntRange(1000),
              help="Entries in the benchmark ledger.")
@click.option("--threads", default=None, type=click.IntRange(1),
              help="Signature-check threads beside the checking one, in checker_threads [CPUs - 1, at least 1].")
@click.option("--signer-json", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A 'bench signer --out' file: compare with that signer's entries/s instead of this "
                   "run's signer_sequencer estimate.")
@bootstrap_option
@out_option
@json_option
def verifier(entries: int, threads: int | None, signer_json: Path | None, bootstrap: str | None, out: Path | None,
             as_json: bool) -> None:
    """Entries verified per second by the pure checker (1 thread and with a signature thread)
    and by a real verifier worker end to end, beside raw ML-DSA-65 sign/verify rates measured
    in the same run. Goal: the worker verifies at least twice as fast as the signer signs
    (this run's signer_sequencer, or a measured signer with --signer-json); the pure
    checker is judged beside it (checker_met). Then the caught-up worker is killed with SIGKILL
    and started again: seconds until its restored state is reported (restart_s) and its checker
    process's RSS, beside the old way's cost (checker_1_thread.journal_restore: rebuilding the
    in-memory history from a journal line per entry). Uses private topics (deleted afterwards);
    without a configured Kafka it starts a private embedded broker."""
    from ledgerstream.core import config, mldsa
    from ledgerstream.core.errors import ConfigError
    from ledgerstream.tools.bench_verifier import run, signer_rate_from

    signer_report = None
    if signer_json is not None:
        try:
            signer_report = json.loads(signer_json.read_text())
            signer_rate_from(signer_report, mldsa.default_backend())
        except ValueError as exc:
            raise click.BadParameter(f"{signer_json}: {exc}", param_hint="--signer-json") from None
    try:
        bootstrap = config.resolve_bootstrap(bootstrap)
    except ConfigError:
        bootstrap = None
    report(run(entries, bootstrap, threads, log=info, signer_report=signer_report), as_json, out)


@bench.command()
@click.option("--entries", default=100_000, show_default=True, type=click.IntRange(5000),
              help="Entries in the benchmark ledger; reads are measured at a fifth of it and at all of it.")
@click.option("--signing-mode", type=click.Choice(["checkpoint", "entry"]), default="checkpoint", show_default=True,
              help="How the benchmark ledger is signed (entry: an ML-DSA-65 signature per entry, slower to build "
                   "and to follow).")
@click.option("--event-ids", type=click.Choice(["uuid7", "uuid4"]), default="uuid7", show_default=True,
              help="Event ids of the benchmark ledger: time-ordered UUIDv7 as ledgerstream's producers make them, "
                   "or random UUIDv4 as other producers may (the index's worst case).")
@bootstrap_option
@out_option
@json_option
def index(entries: int, signing_mode: str, event_ids: str, bootstrap: str | None, out: Path | None,
          as_json: bool) -> None:
    """The ledger index at two sizes (a fifth of --entries, then all): follow rate and peak
    RSS of a real follower, show and prove inclusion latency p50/p99 in-process, replay of
    one agent's k entries for k = 10, 100, 1000, index and tile bytes per entry, and the
    baseline (show by a full read) at the small size. Flat reads mean the ``flat`` ratios
    stay near 1. Private topics (deleted afterwards); without a configured Kafka it starts a
    private embedded broker. See docs/benchmarks.md."""
    from ledgerstream.core import config
    from ledgerstream.core.errors import ConfigError
    from ledgerstream.tools.bench_index import run

    try:
        bootstrap = config.resolve_bootstrap(bootstrap)
    except ConfigError:
        bootstrap = None
    result = run(entries, bootstrap, signing_mode, log=info, event_ids=event_ids)
    if out is not None or as_json:
        report(result, as_json, out)
    if not as_json:
        for size, point in result["points"].items():
            click.echo(f"{int(size):>10,} entries: follow {point['follow']['entries_per_s']} entries/s, "
                       f"RSS peak/median {point['follow']['peak_rss_mb']}/{point['follow']['median_rss_mb']} MB; show p50/p99 {point['show']['p50_ms']}/"
                       f"{point['show']['p99_ms']} ms; prove p50/p99 {point['prove_inclusion']['p50_ms']}/"
                       f"{point['prove_inclusion']['p99_ms']} ms; replay k=10/100/1000: "
                       + "/".join(f"{r['seconds']}s" for r in point["replay_agent"].values())
                       + f"; {point['index_bytes_per_entry']} + {point['tile_bytes_per_entry']} bytes/entry"
                       + (f"; baseline full-read show {point['baseline_full_read_show_s']} s"
                          if "baseline_full_read_show_s" in point else ""))
        click.echo(f"flat: {result['flat']}")


def _sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v.replace("_", "")) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of entry counts") from None
    if not sizes or min(sizes) < 100:
        raise click.BadParameter("give one or more sizes of at least 100 entries")
    return sizes


@bench.command()
@click.option("--sizes", default="100000,1000000", show_default=True, callback=_sizes,
              help="Ledger sizes (entries, comma-separated), each measured on a ledger of its own.")
@click.option("--tail", default=5000, show_default=True, type=click.IntRange(0),
              help="Entries the first signer writes after its snapshot before it is killed (the restart "
                   "replays them; half the signer's default --snapshot-every is the average case: 5,000 in entry "
                   "mode, 25,000 in checkpoint mode).")
@click.option("--signing-mode", type=click.Choice(["entry", "checkpoint"]), default="entry", show_default=True,
              help="The restarted signers' signing mode: the tail is signed and replayed in it.")
@bootstrap_option
@out_option
@json_option
def recovery(sizes: tuple[int, ...], tail: int, signing_mode: str, bootstrap: str | None, out: Path | None,
             as_json: bool) -> None:
    """What a signer restart costs as the ledger grows. For each size a ledger is written
    (checkpoint signing, by the signer's own sequencer), then a real signer process is started
    on it (full replay: its recovery_s and RSS; it then writes a snapshot), signs --tail more
    entries, is killed with SIGKILL and started again with one action produced right after
    the kill: seconds from the kill until that entry is committed, the new process's
    recovery_s and RSS. Then a leader and a warm standby: kill -9 the leader, seconds until
    the standby commits the next action. ``growth`` compares the largest size with the
    smallest. Private topics (deleted afterwards); without a configured Kafka it starts a
    private embedded broker. See docs/benchmarks.md."""
    from ledgerstream.core import config
    from ledgerstream.core.errors import ConfigError
    from ledgerstream.tools.bench_recovery import run

    try:
        bootstrap = config.resolve_bootstrap(bootstrap)
    except ConfigError:
        bootstrap = None
    result = run(sizes, bootstrap, log=info, tail=tail, signing_mode=signing_mode)
    if out is not None or as_json:
        report(result, as_json, out)
    if not as_json:
        for size, point in result["points"].items():
            first, again, standby = point["first_start"], point["after_kill"], point["standby"]
            click.echo(f"{int(size):>10,} entries: start {first['recovery_s']} s ({first['rss_mb']} MB); "
                       f"after kill -9: recovery {again['recovery_s']} s, kill to commit {again['kill_to_commit_s']} s, "
                       f"RSS {again['rss_mb']} MB; standby takeover {standby['kill_to_commit_s']} s "
                       f"(session timeout {standby['session_timeout_s']} s)")
        click.echo(f"growth: {result['growth']}")
        click.echo(f"goal: {result['goal']}")


@bench.command()
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the campaign's own dev stack; must be new or empty [a temporary folder].")
@click.option("--agents", default=4, show_default=True, type=click.IntRange(1, 64), help="Agents recording actions.")
@click.option("--rate", default=200.0, show_default=True, type=click.FloatRange(1, 5000),
              help="Events per second, all agents together, during the whole campaign.")
@click.option("--broker-kills", default=3, show_default=True, type=click.IntRange(0), help="kill -9 of the Kafka broker.")
@click.option("--signer-kills", default=20, show_default=True, type=click.IntRange(0), help="kill -9 of the signer.")
@click.option("--verifier-kills", default=5, show_default=True, type=click.IntRange(0),
              help="kill -9 of a verifier (chosen at random).")
@click.option("--broker-pauses", default=2, show_default=True, type=click.IntRange(0),
              help="SIGSTOP of the broker for --pause-seconds, then SIGCONT.")
@click.option("--pause-seconds", default=8.0, show_default=True, type=click.FloatRange(0.5, 300))
@click.option("--seed", default=1, show_default=True, help="Order of the faults and verifier choice.")
@out_option
@json_option
def faults(home: Path | None, agents: int, rate: float, broker_kills: int, signer_kills: int, verifier_kills: int,
           broker_pauses: int, pause_seconds: float, seed: int, out: Path | None, as_json: bool) -> None:
    """Fault campaign on a fresh dev stack of its own: under a steady load of several agents,
    kill -9 the broker, the signer and the verifiers and freeze the broker, in a shuffled
    order, waiting after each fault until every component is healthy again. Then checks that
    every recorded event is in the ledger exactly once, that the ledger verifies, that every
    component was healthy within 30 s of the last fault, and that the verifiers raised nothing
    but "stalled". Prints the recovery times per fault kind. Exit status 0 when every check
    holds, 1 otherwise, 2 on usage errors."""
    import tempfile

    from ledgerstream.cli.common import EXIT_FAILED, EXIT_USAGE, fail
    from ledgerstream.tools.bench_faults import run

    if home is not None and home.exists() and any(home.iterdir()):
        fail(f"--home {home} is not empty: the campaign starts a fresh dev stack there and wipes it", EXIT_USAGE)
    root = home or Path(tempfile.mkdtemp(prefix="ledgerstream-faults-"))
    result = run(root, agents=agents, rate=rate, broker_kills=broker_kills, signer_kills=signer_kills,
                 verifier_kills=verifier_kills, broker_pauses=broker_pauses, pause_seconds=pause_seconds,
                 seed=seed, log=info)
    if not as_json:
        for kind, row in result["faults"].items():
            click.echo(f"{kind:14} count={row['count']}  recovery p50={row['recovery_p50_s']}s  "
                       f"max={row['recovery_max_s']}s")
        click.echo(f"events: {result['events']}")
        click.echo(f"alerts: {result['alerts']}")
        click.echo("checks: " + "  ".join(f"{k}={'ok' if v else 'FAILED'}" for k, v in result["checks"].items()))
    report(result, as_json, out)
    if not result["ok"]:
        raise SystemExit(EXIT_FAILED)
