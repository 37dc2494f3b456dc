"""One-shot init container: create the ledger topics with the layout DESIGN.md fixes, and
(with ``--sasl-secrets``) every role's SCRAM user and the least-privilege ACLs.

Idempotent (existing topics, users and ACLs are left alone); the same code the dev stack
runs, so the production layout and permissions cannot drift from it. Runs as the admin
principal (``$LEDGERSTREAM_KAFKA_CONFIG``).
"""
from __future__ import annotations

import argparse
import sys

from pathlib import Path

from ledgerstream.core.config import Topics
from ledgerstream.core.kafka_security import kafka_config
from ledgerstream.stack.security import BrokerSecurity, ensure_acls, ensure_users
from ledgerstream.stack.topics import ensure_topics


def main() -> int:
    p = argparse.ArgumentParser(description="Create the ledgerstream topics (idempotent).")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic-prefix", default=None, help="[$LEDGERSTREAM_TOPIC_PREFIX or 'ledgerstream.']")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--sasl-secrets", type=Path, default=None,
                   help="sasl.json written by 'python -m ledgerstream.stack.compose_secrets': create the "
                        "role users and ACLs too")
    a = p.parse_args()
    topics = Topics.with_prefix(a.topic_prefix)
    try:
        if a.sasl_secrets is not None:
            admin = kafka_config(a.bootstrap, "admin")
            ensure_users(admin, BrokerSecurity.load_or_create(a.sasl_secrets), timeout=a.timeout)
            print(f"ACLs: {ensure_acls(admin, topics, timeout=a.timeout)} rules in place")
        created = ensure_topics(a.bootstrap, topics, timeout=a.timeout)
    except Exception as exc:  # noqa: BLE001  (init container: report any failure and exit non-zero)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"created: {', '.join(created) or 'nothing (all topics exist)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
