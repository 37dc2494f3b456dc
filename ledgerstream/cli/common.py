"""Small helpers every CLI module shares: JSON output, options, exit codes."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ledgerstream.core import config
from ledgerstream.core.text import escape_invisible

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def print_json(data: Any) -> None:
    """Results go to stdout as JSON; human messages go to stderr."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def info(message: str) -> None:
    click.echo(message, err=True)


def safe_text(value: Any) -> str:
    """``value`` as text a terminal shows literally (text.escape_invisible: ESC, NUL, bidi
    overrides, zero-width characters become ``\\x1b``, ``\\u202e``...). Every human output of
    ledger-derived strings goes through this; JSON output does not need it. Give the result to
    rich as ``Text`` (or through ``rich.markup.escape``) so that ``[red]`` in an id is not markup."""
    return escape_invisible(str(value))


def home_option(f: Callable) -> Callable:
    return click.option("--home", type=click.Path(path_type=Path), default=None,
                        help="Dev stack folder [default: $LEDGERSTREAM_HOME or ~/.ledgerstream].")(f)


def bootstrap_option(f: Callable) -> Callable:
    return click.option("--bootstrap", default=None, metavar="HOST:PORT",
                        help="Kafka bootstrap servers [default: $LEDGERSTREAM_BOOTSTRAP, else the dev stack].")(f)


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(f)


def resolve_home(home: Path | None) -> Path:
    return Path(home).expanduser().resolve() if home else config.home()


def fail(message: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
