"""``ledgerstream bench index`` end to end on a small ledger: a real follower process over
Kafka at both sizes, reads measured in-process, and a report with the fields
docs/benchmarks.md and the CLI read. The numbers themselves are not asserted (benchmarks,
not timed tests); what is asserted is that each one was measured on what it claims."""
from __future__ import annotations

import pytest

from ledgerstream.tools import bench_index

pytestmark = pytest.mark.integration


def test_bench_index_measures_both_sizes_with_a_real_follower(bootstrap: str) -> None:
    result = bench_index.run(entries=5000, bootstrap=bootstrap)
    assert result["benchmark"] == "index" and set(result["points"]) == {"1000", "5000"}
    for size, point in result["points"].items():
        assert point["entries"] == int(size) and point["write_entries_per_s"] > 0
        follow = point["follow"]
        assert follow["wall_s"] > 0 and follow["entries_per_s"] > 0 and follow["peak_rss_mb"] > 20  # a live process
        assert 20 < follow["median_rss_mb"] <= follow["peak_rss_mb"]
        for read in ("show", "prove_inclusion"):
            assert point[read]["n"] == bench_index.SAMPLES and 0 < point[read]["p50_ms"] <= point[read]["p99_ms"]
        # every rare agent's entries that the ledger holds at this size are replayed, no more
        for agent, k in bench_index.RARE.items():
            assert 0 < point["replay_agent"][agent]["k"] <= k
        assert point["replay_agent"]["rare-1000"]["k"] > point["replay_agent"]["rare-10"]["k"]
        assert point["index_bytes_per_entry"] > 32 and point["tile_bytes_per_entry"] >= 32  # a hash per leaf at least
    assert result["points"]["5000"]["replay_agent"]["rare-1000"]["k"] == 1000
    assert result["points"]["1000"]["baseline_full_read_show_s"] > 0
    assert set(result["flat"]) == {"show_p99_ratio", "prove_p99_ratio", "follower_peak_rss_ratio",
                                   "follower_median_rss_ratio"}
    assert result["event_ids"] == "uuid7"  # as ledgerstream's producers make them
