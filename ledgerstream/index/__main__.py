"""``python -m ledgerstream.index [run options]``: ``ledgerstream index run`` (for supervisors:
the dev stack, compose). Same options and exit status (0, 2, 4, 70)."""
from __future__ import annotations

import sys

from ledgerstream.cli import main as cli_main


def main(argv: list[str] | None = None) -> None:
    sys.argv = ["ledgerstream", "index", "run", *(sys.argv[1:] if argv is None else argv)]
    cli_main.main()


if __name__ == "__main__":
    main()
