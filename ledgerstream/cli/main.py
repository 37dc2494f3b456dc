"""The ``ledgerstream`` command: a thin, lazily loaded shell over the library.

Sub-commands live in their own modules and are imported only when invoked, so that
``ledgerstream --help`` and light commands never pay for faust or the web stack.
Exit codes: 0 ok, 1 verification failed or findings, 2 usage or environment error.
"""
from __future__ import annotations

import importlib
import sys

import click

# name -> "module:attribute" of a click command or group
COMMANDS: dict[str, tuple[str, str, str]] = {
    "dev": ("ledgerstream.cli.dev", "dev", "Run the embedded dev stack (Kafka, dev TSA, signer, verifiers, dashboard)."),
    "keys": ("ledgerstream.cli.keys", "keys", "Generate and inspect ML-DSA-65 signing keys."),
    "replay": ("ledgerstream.cli.replay", "replay", "Replay the ledger by agent/session/time/links, re-verifying each entry."),
    "verify-bundle": ("ledgerstream.cli.bundle", "verify_bundle", "Verify an evidence bundle offline (no Kafka needed)."),
    "emit": ("ledgerstream.cli.emit", "emit", "Record one agent action (prints its event id)."),
    "sync": ("ledgerstream.cli.sync", "sync", "Deliver every agent's offline spool to Kafka."),
    "agents": ("ledgerstream.cli.agents", "agents", "List agents in the ledger with their chain heads."),
    "approvals": ("ledgerstream.cli.approvals", "approvals", "List approval requests agents are waiting on."),
    "approve": ("ledgerstream.cli.approvals", "approve", "Sign (or reject) an approval request with your key."),
    "demo": ("ledgerstream.cli.demo", "demo", "Record a realistic multi-agent workload into Kafka."),
    "bench": ("ledgerstream.cli.bench", "bench", "Benchmarks (producer, signer, verifier, faults): latency, throughput, fault recovery, JSON."),
    "export": ("ledgerstream.cli.export", "export", "Export the ledger: SIEM feeds (ECS, CEF, OCSF, syslog), bundles."),
    "dashboard": ("ledgerstream.cli.dashboard", "dashboard", "Serve the read-only verifier dashboard (web page)."),
    "show": ("ledgerstream.cli.ledger", "show", "Show one entry with its signature and signed bytes."),
    "prove": ("ledgerstream.cli.ledger", "prove", "RFC 9162 inclusion / consistency proofs."),
    "checkpoints": ("ledgerstream.cli.ledger", "checkpoints", "List and export signed checkpoints."),
    "verify": ("ledgerstream.cli.verify", "verify", "Verify the whole ledger in Kafka once (exit 0 only when intact)."),
    "alerts": ("ledgerstream.cli.alerts", "alerts", "List (or follow) the verifiers' alerts."),
    "verifiers": ("ledgerstream.cli.verifiers", "verifiers", "Status of the running verifiers (position, lag, health)."),
    "verifier": ("ledgerstream.cli.verifiers", "verifier", "Run one verifier in the foreground."),
    "mcp": ("ledgerstream.cli.mcp", "mcp", "Model Context Protocol: a ledger MCP server, a governing MCP proxy."),
    "report": ("ledgerstream.cli.report", "report", "Compliance evidence reports (EU AI Act) over a period: HTML, PDF, JSON."),
    "witness": ("ledgerstream.cli.witness", "witness", "Witnessed checkpoints: our ML-DSA-65 witness, the cosigning client."),
    "index": ("ledgerstream.cli.index", "index", "The ledger index: follow the ledger into SQLite rows and C2SP tiles; its status."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module = importlib.import_module(spec[0])
        return getattr(module, spec[1])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ledgerstream")
def cli() -> None:
    """ledgerstream: a tamper-evident, append-only ledger of AI-agent actions on Kafka.

    Most commands default to the dev stack under $LEDGERSTREAM_HOME (default
    ~/.ledgerstream) and take --bootstrap etc. for a real cluster.
    Exit status: 0 ok, 1 verification failed / findings, 2 usage or environment error.
    """


def main() -> None:
    from ledgerstream.core.errors import LedgerstreamError

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code == 2 or isinstance(exc, click.UsageError) else exc.exit_code)
    except LedgerstreamError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
