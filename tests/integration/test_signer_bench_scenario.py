"""``ledgerstream bench signer``'s measurement on the real broker, small: one entry-mode
scenario end to end (a real signer subprocess drains a backlog of three transactions, the drain's end is timed
from the partition's last stable offset, then a paced run) and what it reports."""
from __future__ import annotations

import pytest

from ledgerstream.core import mldsa
from ledgerstream.tools import bench_signer

pytestmark = pytest.mark.integration


def test_entry_scenario_measures_a_real_signer(bootstrap: str, kafka_broker, signer_key_path, tmp_path) -> None:
    backend = mldsa.available_backends()[0]
    raw = 1000.0
    r = bench_signer.bench_scenario(bootstrap, signer_key_path, tmp_path, backend, "entry", 5000, 40, raw,
                                    lambda msg: None, kafka_broker.pid, signing_nice=5)
    # bench_scenario itself raises unless the ledger holds exactly 5040 gapless entries
    assert r["entries_per_s"] > 0 and r["ratio_to_raw_sign"] == round(r["entries_per_s"] / raw, 2)
    assert r["cpu_us_per_entry"]["signer"] > 0 and r["cpu_us_per_entry"]["broker"] > 0
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["max"]
    assert r["entry_bytes_mean"] > 3000  # an ML-DSA-65 signature is 3,309 bytes
    signing_thread = mldsa.load_private_key(signer_key_path).sign_many_releases_gil
    assert r["signing_thread_nice"] == (5 if signing_thread else None)


def test_the_kafka_floor_relays_every_action_through_transactions(bootstrap: str, kafka_broker, tmp_path) -> None:
    # enough transactions (10 of 2,000) that the CPU clocks, started once the first is visible,
    # see several of them at /proc's 10 ms resolution (with 3,000 the relay could be done by then)
    r = bench_signer.kafka_floor(bootstrap, tmp_path, 20_000, 700, lambda msg: None, kafka_broker.pid)
    # kafka_floor itself raises unless 20,000 records became visible to a read_committed consumer
    assert r["records_per_s"] > 0 and r["record_bytes"] == 700
    assert r["record_bytes_mean"] == 700  # each action padded to the size asked for
    assert r["cpu_us_per_record"]["relay"] > 0 and r["cpu_us_per_record"]["broker"] > 0
    assert (tmp_path / "relay-status.json").exists()
