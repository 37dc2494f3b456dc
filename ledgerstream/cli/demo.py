"""``ledgerstream demo``: a multi-agent workload into the dev stack (or any Kafka)."""
from __future__ import annotations

import click

from ledgerstream.cli.common import EXIT_FAILED, EXIT_USAGE, bootstrap_option, fail, info, json_option, print_json


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--agents", "n_agents", default=4, show_default=True, type=click.IntRange(1, 1000),
              help="Number of agents: one planner and N-1 workers.")
@click.option("--events", "n_events", default=200, show_default=True, type=click.IntRange(0),
              help="Exact number of events to record across all agents.")
@click.option("--run-id", default=None, help="Make agent ids unique to this run (demo-RUN-planner ...).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for Kafka to acknowledge.")
@bootstrap_option
@json_option
def demo(n_agents: int, n_events: int, run_id: str | None, timeout: float, bootstrap: str | None,
         as_json: bool) -> None:
    """Record a realistic multi-agent workload: a planner (demo-planner) calls worker
    agents (demo-worker-1 ...), which search, fetch, call an LLM and touch data; a
    policy denies deletions. Worker events link to the planner's calls.

    Returns once Kafka acknowledged every event. With --json prints {"agents",
    "events", "delivered", "links", "seconds"}. Exit status 0 when all were delivered,
    1 when Kafka did not acknowledge them in time, 2 when no Kafka is configured.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ledgerstream.core import config
    from ledgerstream.core.errors import ConfigError
    from ledgerstream.producers.demo import DemoError, run_demo

    try:
        bootstrap = config.resolve_bootstrap(bootstrap)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=as_json) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        try:
            result = run_demo(n_agents, n_events, bootstrap=bootstrap, topics=config.resolve_topics(),
                              run_id=run_id, timeout=timeout, progress=progress)
        except DemoError as exc:
            fail(str(exc), EXIT_FAILED)
    if as_json:
        print_json(result)
    else:
        info(f"{result['delivered']} of {result['events']} events from {len(result['agents'])} agents "
             f"acknowledged by Kafka in {result['seconds']}s ({result['links']} cross-agent links)")
