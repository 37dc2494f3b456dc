"""``python -m ledgerstream.verifier_worker --home H --id v1``: run one verifier (foreground).

Exit status: 0 stopped, 2 configuration or environment error (bad options, no trusted key,
no alert signing key, state folder locked by another process, Kafka unreachable at start).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ledgerstream.core import config, interpreter
from ledgerstream.core.alert_signature import load_alert_key, verifier_key_path
from ledgerstream.core.errors import LedgerstreamError
from ledgerstream.core.verify import SWITCH_INTERVAL
from ledgerstream.verifier_worker.settings import VerifierSettings
from ledgerstream.core.verify import checker_config

log = logging.getLogger("ledgerstream.verifier")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ledgerstream.verifier_worker",
                                description="An independent ledger verifier (docs/verifiers.md).")
    p.add_argument("--id", required=True, help="verifier id: its consumer group and state folder")
    p.add_argument("--home", type=Path, default=None, help="dev stack home [$LEDGERSTREAM_HOME]")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap [$LEDGERSTREAM_BOOTSTRAP or the dev stack]")
    p.add_argument("--topic-prefix", default=None, help="topic prefix [the dev stack's]")
    p.add_argument("--reverify", action="store_true", help="forget the saved state and verify from the start")
    p.add_argument("--trusted-key", type=Path, action="append", default=[], help="extra trusted signer key PEM")
    p.add_argument("--alert-key", type=Path, default=None,
                   help="this verifier's own ML-DSA-65 private key PEM, that signs every alert it publishes "
                        "[HOME/keys/verifier-<id>.pem; without it the verifier does not start]")
    p.add_argument("--tsa-ca", type=Path, default=None, help="TSA CA PEM [HOME/tsa/ca.pem]")
    p.add_argument("--policy", type=Path, default=None, help="policy file with approvers [HOME/policy.yaml]")
    p.add_argument("--metrics-port", type=int, default=0, help="Prometheus port [any free port]")
    p.add_argument("--batch-size", type=int, default=1000, help="records per checked batch [1000]")
    p.add_argument("--threads", type=int, default=1,
                   help="signature-check threads beside the one that decodes, re-hashes and chains [1]")
    p.add_argument("--link-grace-seconds", type=float, default=300.0)
    p.add_argument("--link-grace-entries", type=int, default=10_000)
    p.add_argument("--stall-seconds", type=float, default=60.0)
    p.add_argument("--checkpoint-overdue-seconds", type=float, default=120.0)
    p.add_argument("--checkpoint-wait-seconds", type=float, default=config.CHECKPOINT_WAIT_SECONDS,
                   help="caught up this long, a checkpoint read before the last observation that still "
                        "claims entries the ledger lacks is reported (checkpoint_root_mismatch) "
                        f"[{config.CHECKPOINT_WAIT_SECONDS:g}]")
    p.add_argument("--checkpoint-read-ahead", type=int, default=config.CHECKPOINT_READ_AHEAD,
                   help="checkpoint-topic records the checker may hold waiting for their entries before that "
                        f"topic is held back until the entries catch up [{config.CHECKPOINT_READ_AHEAD}]")
    p.add_argument("--status-seconds", type=float, default=2.0)
    p.add_argument("--watchdog-seconds", type=float, default=120.0,
                   help="exit with status 4 (to be restarted) when reading or observing makes no progress "
                        "this long; 0 disables [120]")
    p.add_argument("--signer-group", default="", help="the signer's consumer group [<entries topic>.signer]")
    p.add_argument("--peer-prefix", default=None,
                   help="topic prefix of another copy of this ledger: checkpoints our signer signed there must "
                        "agree with this ledger (else a split_view alert)")
    return p.parse_args(argv)


def settings_from_args(a: argparse.Namespace) -> VerifierSettings:
    home = (a.home or config.home()).resolve()
    topics = config.Topics.with_prefix(a.topic_prefix) if a.topic_prefix is not None else config.resolve_topics(home)
    checker = checker_config(home, trusted_keys=a.trusted_key, tsa_ca_path=a.tsa_ca, policy=a.policy,
                             link_grace_seconds=a.link_grace_seconds, link_grace_entries=a.link_grace_entries)
    return VerifierSettings(
        id=a.id, home=home, bootstrap=config.resolve_bootstrap(a.bootstrap, home), topics=topics, checker=checker,
        reverify=a.reverify, batch_size=a.batch_size, threads=a.threads, metrics_port=a.metrics_port,
        status_seconds=a.status_seconds, stall_seconds=a.stall_seconds,
        checkpoint_overdue_seconds=a.checkpoint_overdue_seconds, checkpoint_wait_seconds=a.checkpoint_wait_seconds,
        checkpoint_read_ahead=a.checkpoint_read_ahead,
        signer_group=a.signer_group, watchdog_seconds=a.watchdog_seconds,
        alert_key_path=a.alert_key or verifier_key_path(home, a.id), peer_prefix=a.peer_prefix)


def run(argv: list[str]) -> int:
    """Lock the state folder, restore the checker process, then run faust until stopped."""
    import faust

    from ledgerstream.verifier_worker.app import build_app
    from ledgerstream.verifier_worker.checker_process import CheckerProcess
    from ledgerstream.verifier_worker.store import StateStore

    settings = settings_from_args(parse_args(argv))
    alert_key = load_alert_key(settings.alert_key_path, settings.id)  # no key, no start: never unsigned alerts
    log.info("verifier %s signs its alerts with key %s (%s)", settings.id, alert_key.public_key().key_id,
             settings.alert_key_path)
    interpreter.tune(SWITCH_INTERVAL)  # the signature thread (app.py) gets the GIL back quickly
    lock = StateStore(settings.state_dir)
    lock.lock()  # held until this process ends (the reference keeps the file open)
    checker = CheckerProcess()
    try:
        info = checker.start(argv)
        log.info("verifier %s: resuming at seq %d (offsets %s), metrics at %s, batches through %s", settings.id,
                 info["position"], info["next_offset"], info["metrics_url"], info["batch_ring"])
        app = build_app(settings, checker, info["next_offset"], alert_key)
        faust.Worker(app, loglevel="INFO").execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        checker.close()
        lock.unlock()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except LedgerstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
