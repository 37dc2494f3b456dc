"""``ledgerstream bench producer`` end to end on a few events: every scenario runs on private
topics of the test broker, which are removed afterwards; the report has the fields
docs/benchmarks.md and the CLI read (the numbers are not asserted: a benchmark, not a timed test)."""
from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from ledgerstream.tools import bench_producer
from support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_bench_producer_runs_every_scenario_and_cleans_up(bootstrap: str) -> None:
    result = bench_producer.run(events=300, bootstrap=bootstrap)
    assert result["benchmark"] == "producer" and result["bootstrap"] == bootstrap
    assert set(result["scenarios"]) == {"noise_floor", "baseline_produce", "emit_broker_up", "emit_broker_down",
                                        "emit_paced"}
    assert result["goal"]["worst_emit_p99_us"] == max(result["scenarios"]["emit_broker_up"]["p99_us"],
                                                      result["scenarios"]["emit_broker_down"]["p99_us"])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_until(lambda: not [t for t in admin.list_topics(timeout=30).topics if t.startswith("bench-")], 60,
               "the benchmark's private topics to be deleted")
