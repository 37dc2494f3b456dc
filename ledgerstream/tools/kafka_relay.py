"""The Kafka floor under the signer: its transactional loop with the ledger work taken out.

``bench signer`` runs this beside checkpoint mode, on the same broker and the same
pre-produced actions: it takes a batch exactly as the signer does (``topic_reader.take``,
the signer's batch size and wait, its consumer and producer settings), produces one record
per action to ``entries`` (the action's bytes padded to the size of a checkpoint-mode entry,
keyed by the action's key), adds the consumer's positions to the transaction and commits.
Nothing is decoded, validated, hashed or encoded. Its rate is what any signer written as a
Python loop over confluent-kafka could reach on this machine; checkpoint mode's distance from
it is the ledger's own cost (docs/benchmarks-signer.md, round 8).
"""
from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer

from ledgerstream.core.config import Topics
from ledgerstream.core.topic_reader import take
from ledgerstream.signer_worker.loop import assign_actions, consumer_config, producer_config
from ledgerstream.signer_worker.settings import SignerSettings


def relay(settings: SignerSettings, events: int, value_bytes: int, status_file: Path, stop: threading.Event) -> int:
    """Relay ``events`` actions (or until ``stop``); returns how many were committed. The
    status file gets ``first_taken_at`` (epoch seconds, when the first batch was in hand: the
    signer's ``received_at`` of entry 0) and, at the end, ``relayed``."""
    producer = Producer(producer_config(settings))
    producer.init_transactions(30)
    consumer = Consumer(consumer_config(settings))
    assign_actions(consumer, settings.topics.actions)
    pads: dict[int, bytes] = {}
    status: dict[str, float | int] = {"relayed": 0}
    relayed = 0
    try:
        while relayed < events and not stop.is_set():
            msgs = [m for m in take(consumer, settings.batch_size, settings.batch_ms / 1000) if m.error() is None]
            producer.poll(0)
            if not msgs:
                continue
            if relayed == 0:
                status["first_taken_at"] = time.time()
                status_file.write_text(json.dumps(status))
            producer.begin_transaction()
            for m in msgs:
                value = m.value()
                short = value_bytes - len(value)
                pad = pads.get(short)
                if pad is None:
                    pad = pads[short] = bytes(max(0, short))
                producer.produce(settings.topics.entries, value + pad, key=m.key())
            producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                 consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(60)
            relayed += len(msgs)
    finally:
        status["relayed"] = relayed
        status_file.write_text(json.dumps(status))
        consumer.close()
    return relayed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledgerstream.tools.kafka_relay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers.")
    parser.add_argument("--topic-prefix", required=True, help="Prefix of the actions and entries topics.")
    parser.add_argument("--events", type=int, required=True, help="Actions to relay, then exit.")
    parser.add_argument("--value-bytes", type=int, required=True, help="Size of each produced record.")
    parser.add_argument("--status-file", type=Path, required=True, help="Where the timings are written (JSON).")
    args = parser.parse_args(argv)
    if args.events < 1 or not 1 <= args.value_bytes <= 1024 * 1024:
        parser.error("--events must be positive and --value-bytes between 1 and 1 MiB")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = SignerSettings(bootstrap=args.bootstrap, topics=Topics.with_prefix(args.topic_prefix),
                              key_path=Path(), transactional_id=f"{args.topic_prefix}relay",
                              group_id=f"{args.topic_prefix}relay")
    relay(settings, args.events, args.value_bytes, args.status_file, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
