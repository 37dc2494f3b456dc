"""Where the MCP server finds the ledger and what it trusts, resolved on every tool call.

Why per call: the server may start before the dev stack (or a new ``stack.json``) exists,
and a tool call must then fail with a clear message rather than the server refusing to start.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ledgerstream.core import config
from ledgerstream.core.config import Topics
from ledgerstream.core.verify import CheckerConfig
from ledgerstream.tools.ledger_answers import DEFAULT_WAIT
from ledgerstream.core.verify import checker_config


@dataclass(frozen=True)
class ServeConfig:
    """The ``mcp serve`` options the tools share (the same as ``verify`` / ``replay`` take)."""

    home: Path
    bootstrap_option: str | None = None
    trusted_keys: tuple[Path, ...] = ()
    tsa_ca: Path | None = None
    policy: Path | None = None

    def bootstrap(self) -> str:
        """--bootstrap, $LEDGERSTREAM_BOOTSTRAP or the dev stack; ConfigError if none."""
        return config.resolve_bootstrap(self.bootstrap_option, self.home)

    def topics(self) -> Topics:
        return config.resolve_topics(self.home)

    def checker_config(self) -> CheckerConfig:
        """What ``ledgerstream verify`` trusts with the same options (keys, TSA CA, approvers)."""
        return checker_config(self.home, trusted_keys=self.trusted_keys, tsa_ca_path=self.tsa_ca, policy=self.policy)

    def selection_options(self, **filters: object) -> dict[str, object]:
        """The option dict ``cli.selection.load_selection`` takes, as ``replay`` builds it."""
        return {"agents": (), "sessions": (), "action_types": (), "since": None, "until": None, "seq_range": None,
                "follow_links": False, "trusted_keys": self.trusted_keys, "tsa_ca": self.tsa_ca,
                "topic_prefix": None, "wait": DEFAULT_WAIT, **filters}
