"""``ledgerstream dev up|down|status``: the embedded dev stack."""
from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ledgerstream.cli.common import home_option, info, json_option, print_json, resolve_home
from ledgerstream.stack import devstack


@click.group()
def dev() -> None:
    """Run the embedded dev stack: real Kafka (KRaft), the DEV-ONLY TSA, the signer,
    the verifiers, the index and the dashboard, all on 127.0.0.1, data under $LEDGERSTREAM_HOME."""


@dev.command()
@home_option
@click.option("--detach", is_flag=True, help="Return once the stack is ready and leave it running.")
@click.option("--fresh", is_flag=True, help="Stop the stack and wipe its data (ledger, keys, TSA CA) first.")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for the stack to be ready.")
@json_option
def up(home: Path | None, detach: bool, fresh: bool, timeout: float, as_json: bool) -> None:
    """Start the stack (idempotent: a running stack is left as it is).

    Without --detach, stays in the foreground and stops the stack on Ctrl-C.
    The first start fetches Apache Kafka's jars with Maven into the cache folder.
    """
    home_dir = resolve_home(home)
    info(f"starting the dev stack in {home_dir} ...")
    t0 = time.monotonic()
    state = devstack.up(home_dir, fresh=fresh, timeout=timeout)
    info(f"ready in {time.monotonic() - t0:.1f}s")
    _show(devstack.status(home_dir), as_json)
    if detach:
        return
    info("running in the foreground; Ctrl-C stops the stack (or use --detach)")
    try:
        while devstack.supervisor_pid(home_dir) is not None:
            time.sleep(1)
        info("the stack stopped")
    except KeyboardInterrupt:
        info("stopping ...")
        devstack.down(home_dir)


@dev.command()
@home_option
def down(home: Path | None) -> None:
    """Stop every process of the stack; the data stays for the next 'dev up'."""
    home_dir = resolve_home(home)
    if devstack.supervisor_pid(home_dir) is None and not devstack.recorded_pids(devstack.status(home_dir)):
        info("the dev stack is not running")
        return
    killed = devstack.down(home_dir)
    if killed:
        info(f"killed leftover processes: {killed}")
    info("the dev stack is stopped (data kept)")


@dev.command()
@home_option
@json_option
def status(home: Path | None, as_json: bool) -> None:
    """Show what runs where: bootstrap, TSA URL, pids, topics, verifier positions."""
    _show(devstack.status(resolve_home(home)), as_json)


def _show(state: dict, as_json: bool) -> None:
    if as_json:
        print_json(state)
        return
    console = Console()
    table = Table(title=f"ledgerstream dev stack - {state['home']}", show_lines=False)
    table.add_column("component")
    table.add_column("pid")
    table.add_column("health")
    table.add_column("address / detail")

    def health(part: dict) -> str:
        value = part.get("health") or "-"
        return value if value in ("healthy", "-") else f"[red]{value}[/red]"

    table.add_row("kafka", str(state["kafka"].get("pid")), health(state["kafka"]), str(state["kafka"].get("bootstrap")))
    table.add_row("tsa (DEV-ONLY)", str(state["tsa"].get("pid")), health(state["tsa"]), str(state["tsa"].get("url")))
    table.add_row("signer", str(state["signer"].get("pid")), health(state["signer"]),
                  f"restarts {state['signer'].get('restarts', 0)}")
    for v in state.get("verifiers", []):
        table.add_row(f"verifier {v['id']}", str(v.get("pid")), health(v), f"position {v.get('position')}")
    index = state.get("index") or {}
    if index.get("tiles_dir"):
        table.add_row("index", str(index.get("pid")), health(index), f"tiles {index['tiles_dir']}")
    for w in state.get("witnesses") or []:
        table.add_row(f"witness {w['name']}", str(w.get("pid")), "healthy" if w.get("pid") else "[red]down[/red]",
                      str(w.get("url")))
    client = state.get("witness_client") or {}
    if state.get("witnesses"):
        table.add_row("witness client", str(client.get("pid")), health(client), "ledgerstream witness status")
    dash = state.get("dashboard") or {}
    if dash.get("url"):
        table.add_row("dashboard", str(dash.get("pid")), health(dash), str(dash.get("url")))
    console.print(table)
    token_file = Path(dash["token_file"]) if dash.get("url") and dash.get("token_file") else None
    if token_file is not None and token_file.is_file():
        # the owner's terminal only: --json gives the 0600 file, never the token itself
        console.print(f"dashboard: open {dash['url']}?token={token_file.read_text().strip()} once "
                      f"(token in {token_file}; API clients send Authorization: Bearer <token>)", soft_wrap=True)
    sec = state["kafka"].get("security") or {}
    if sec.get("mechanism"):
        folder = Path(next(iter(sec["client_configs"].values()))).parent if sec.get("client_configs") else None
        console.print(f"kafka: {sec['protocol']} {sec['mechanism']}; client credentials per role "
                      f"({', '.join(sec.get('client_configs') or {})}) in {folder} "
                      f"(use one with LEDGERSTREAM_KAFKA_CONFIG=<file>)", soft_wrap=True)
    console.print("topics: " + ", ".join(f"{k}={v}" for k, v in state["topics"].items()))
    console.print("running" if state.get("running") else "[yellow]not running[/yellow]")
