"""``python -m ledgerstream.tools.dashboard --home H --port P [--token T]`` (the dev stack runs this)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ledgerstream.core.errors import LedgerstreamError
from ledgerstream.tools.dashboard import settings as dashboard_settings
from ledgerstream.tools.dashboard.settings import DEFAULT_PORT, TOKEN_ENV


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ledgerstream.tools.dashboard",
                                description="Read-only verifier dashboard (see docs/dashboard.md).")
    p.add_argument("--home", type=Path, default=None, help="ledgerstream home [$LEDGERSTREAM_HOME]")
    p.add_argument("--host", default="127.0.0.1", help="address to bind [127.0.0.1]")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to bind [{DEFAULT_PORT}]")
    p.add_argument("--token", default=None, help=f"require this token (>= 16 chars) [${TOKEN_ENV}]")
    p.add_argument("--token-file", type=Path, default=None,
                   help="token file, created (0600) with a random token if absent [HOME/dashboard/token]")
    p.add_argument("--no-token", action="store_true", help="serve without a token (loopback only)")
    p.add_argument("--allowed-host", action="append", default=None,
                   help="also accept this Host header name (repeatable)")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap [$LEDGERSTREAM_BOOTSTRAP or the dev stack]")
    p.add_argument("--topic-prefix", default=None, help="topic name prefix [the dev stack's]")
    p.add_argument("--public-key", action="append", type=Path, default=None,
                   help="signer public key PEM (repeatable) [HOME/keys/signer.pub.pem]")
    p.add_argument("--tsa-ca", type=Path, default=None, help="TSA CA bundle PEM [HOME/tsa/ca.pem, dev only]")
    p.add_argument("--trusted-verifier-key", action="append", default=None, metavar="[ID=]PEM",
                   help="trust this verifier public key for alert signatures (repeatable) "
                        "[$LEDGERSTREAM_VERIFIER_KEYS, else HOME/keys/verifier-*.pub.pem]")
    p.add_argument("--tiles-dir", type=Path, default=None,
                   help="the index's C2SP tiles, served under /tlog/ [HOME/tiles]")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    a = parse_args(argv)
    try:
        s = dashboard_settings.resolve(home=a.home, host=a.host, port=a.port, token=a.token, bootstrap=a.bootstrap,
                                       topic_prefix=a.topic_prefix, public_keys=tuple(a.public_key or ()),
                                       tsa_ca=a.tsa_ca, token_path=a.token_file, no_token=a.no_token,
                                       allowed_hosts=tuple(a.allowed_host or ()),
                                       verifier_keys=tuple(a.trusted_verifier_key or ()), tiles_dir=a.tiles_dir)
    except (LedgerstreamError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not s.trusted_verifiers:
        print("warning: no trusted verifier keys: every alert will show as forged or unsigned", file=sys.stderr)
    from ledgerstream.tools.dashboard.app import serve

    try:
        serve(s)
    except OSError as exc:  # port in use, address not available
        print(f"error: cannot serve on {s.host}:{s.port}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
