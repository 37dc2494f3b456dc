"""``python -m ledgerstream.signer_worker``: run one signer (leader or hot standby)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from ledgerstream.core import config, interpreter, mldsa, note, procinfo
from ledgerstream.core.errors import ConfigError, LedgerstreamError
from ledgerstream.signer_worker.loop import SignerWorker
from ledgerstream.signer_worker.settings import SignerSettings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ledgerstream.signer_worker",
                                description="The single writer of the ledger (see docs/signer.md).")
    p.add_argument("--home", type=Path, default=None, help="dev stack home [$LEDGERSTREAM_HOME]")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap [$LEDGERSTREAM_BOOTSTRAP or the dev stack]")
    p.add_argument("--key", type=Path, default=None, help="ML-DSA-65 private key PEM [HOME/keys/signer.pem]")
    p.add_argument("--note-key", type=Path, default=None,
                   help="Ed25519 private key PEM for the checkpoints' signed-note line "
                        "[KEY's sibling NAME-ed25519.pem, if it exists]")
    p.add_argument("--tsa-url", action="append", default=None, help="RFC 3161 TSA URL (repeatable) [dev TSA]")
    p.add_argument("--tsa-policy", choices=["first", "all"], default="first")
    p.add_argument("--signing-mode", choices=["entry", "checkpoint"], default="entry")
    p.add_argument("--timestamp-mode", choices=["checkpoint", "entry"], default="checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="entries per checkpoint")
    p.add_argument("--checkpoint-ms", type=int, default=5000, help="max ms between checkpoints")
    p.add_argument("--batch-size", type=int, default=0,
                   help="records per transaction [2000 in entry signing mode, 10000 in checkpoint mode]")
    p.add_argument("--batch-ms", type=int, default=50)
    p.add_argument("--max-record-bytes", type=int, default=1024 * 1024)
    p.add_argument("--dedup-horizon", type=int, default=1_000_000,
                   help="recent event_ids remembered for dedup and link resolution [%(default)s]")
    p.add_argument("--snapshot-every", type=int, default=None,
                   help="write a recovery snapshot to signer-state every N entries; 0: never "
                        "[10000 in entry signing mode, 50000 in checkpoint mode]")
    p.add_argument("--snapshot-ms", type=int, default=SignerSettings.snapshot_ms,
                   help="... or after this many ms with new entries [%(default)s]")
    p.add_argument("--origin", default=config.DEFAULT_ORIGIN, help="log origin: first line of each checkpoint [%(default)s]")
    p.add_argument("--topic-prefix", default=None)
    p.add_argument("--status-file", type=Path, default=None)
    p.add_argument("--signing-nice", type=int, default=SignerSettings.signing_nice,
                   help="nice value of the entry-signing thread, -20..19 (negative needs CAP_SYS_NICE; "
                        "without it the thread keeps the process's priority) [%(default)s]")
    p.add_argument("--no-leader-election", action="store_true", help="write at once (no hot standby)")
    p.add_argument("--session-timeout-ms", type=int, default=SignerSettings.session_timeout_ms,
                   help="leadership lease: a leader that stops heartbeating loses it after this long, so a "
                        "standby takes over within it plus about a second; the broker must allow it "
                        "(group.min.session.timeout.ms, 6000 by default; the embedded broker allows 1000) "
                        "[%(default)s]")
    p.add_argument("--watchdog-seconds", type=float, default=SignerSettings.watchdog_seconds,
                   help="exit with status 4 (to be restarted) when the loop makes no progress this long, "
                        "e.g. stuck in a Kafka call after a broker crash; 0 disables [%(default)s]")
    return p.parse_args(argv)


def settings_from_args(a: argparse.Namespace) -> SignerSettings:
    home = (a.home or config.home()).resolve()
    stack = config.read_stack(home) or {}
    topics = config.Topics.with_prefix(a.topic_prefix) if a.topic_prefix is not None else config.resolve_topics(home)
    tsa_urls = tuple(a.tsa_url) if a.tsa_url else tuple(u for u in [(stack.get("tsa") or {}).get("url")] if u)
    key_path = a.key or home / "keys" / "signer.pem"
    note_key = a.note_key or note.ed25519_key_path(key_path)
    if a.note_key is None and not note_key.exists():
        note_key = None
    return SignerSettings(
        bootstrap=config.resolve_bootstrap(a.bootstrap, home), topics=topics,
        key_path=key_path, note_key_path=note_key, tsa_urls=tsa_urls, tsa_policy=a.tsa_policy,
        signing_mode=a.signing_mode, timestamp_mode=a.timestamp_mode, batch_size=a.batch_size,
        batch_ms=a.batch_ms, checkpoint_every=a.checkpoint_every, checkpoint_ms=a.checkpoint_ms,
        max_record_bytes=a.max_record_bytes, dedup_horizon=a.dedup_horizon, origin=a.origin,
        snapshot_every=a.snapshot_every, snapshot_ms=a.snapshot_ms,
        status_file=a.status_file or home / "signer" / "status.json",
        leader_election=not a.no_leader_election, session_timeout_ms=a.session_timeout_ms,
        signing_nice=a.signing_nice,
        watchdog_seconds=a.watchdog_seconds)


#: The interpreter's thread switch interval in the signer process (Python's default: 5 ms).
#: The entry-signing thread needs the GIL back after each chunk it signs, while the loop
#: thread is busy in Python; with 5 ms it can wait that long per chunk (~13 ms of signing).
SWITCH_INTERVAL_S = 0.001


def main(argv: list[str] | None = None) -> int:
    interpreter.tune(SWITCH_INTERVAL_S)  # our own process: see signing.py and core/interpreter.py
    procinfo.fix_mmap_threshold()  # RSS after a recovery independent of the ledger's history
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        a = parse_args(argv)
        settings = settings_from_args(a)
        key = mldsa.load_private_key(settings.key_path)
        note_key = (note.load_ed25519(settings.note_key_path.read_bytes(), str(settings.note_key_path))
                    if settings.note_key_path else None)
    except OSError as exc:
        print(f"error: cannot read a key: {exc}", file=sys.stderr)
        return 2
    except (LedgerstreamError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        return SignerWorker(settings, key, note_key).run(stop)
    except ConfigError as exc:  # e.g. the broker refuses the lease's session timeout
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
