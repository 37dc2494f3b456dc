"""One-shot init container: create the ledger topics with the layout DESIGN.md fixes.

Idempotent (existing topics are left alone); the same code the dev stack runs, so the
production layout cannot drift from it: entries/checkpoints one partition, kept forever.
"""
from __future__ import annotations

import argparse
import sys

from ledgerstream.core.config import Topics
from ledgerstream.stack.topics import ensure_topics


def main() -> int:
    p = argparse.ArgumentParser(description="Create the ledgerstream topics (idempotent).")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic-prefix", default=None, help="[$LEDGERSTREAM_TOPIC_PREFIX or 'ledgerstream.']")
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args()
    try:
        created = ensure_topics(a.bootstrap, Topics.with_prefix(a.topic_prefix), timeout=a.timeout)
    except Exception as exc:  # noqa: BLE001  (init container: report any failure and exit non-zero)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"created: {', '.join(created) or 'nothing (all topics exist)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
