"""``python -m ledgerstream.witness serve|client ...``: ``ledgerstream witness`` for supervisors
(the dev stack, compose). Same options and exit status."""
from __future__ import annotations

import sys

from ledgerstream.cli import main as cli_main


def main(argv: list[str] | None = None) -> None:
    sys.argv = ["ledgerstream", "witness", *(sys.argv[1:] if argv is None else argv)]
    cli_main.main()


if __name__ == "__main__":
    main()
