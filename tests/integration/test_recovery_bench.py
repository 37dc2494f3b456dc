"""``ledgerstream bench recovery`` on two small ledgers on the real broker: a real signer
process started, killed with SIGKILL and started again on each. The numbers are not asserted
(benchmarks, not timed tests); what is asserted is that each was measured on what it claims:
the entry committed after the kill continues the ledger at exactly its size (the bench
checks that itself and fails otherwise), and each process reported its own recovery."""
from __future__ import annotations

import pytest

from ledgerstream.tools import bench_recovery

pytestmark = pytest.mark.integration


def test_bench_recovery_restarts_a_real_signer_at_each_size(bootstrap: str) -> None:
    result = bench_recovery.run(sizes=(1500, 300), bootstrap=bootstrap, tail=40)
    assert result["benchmark"] == "recovery" and result["sizes"] == [300, 1500]
    assert set(result["points"]) == {"300", "1500"}
    for size, point in result["points"].items():
        assert point["entries"] == int(size)
        first, again = point["first_start"], point["after_kill"]
        assert first["recovery_s"] > 0 and first["rss_mb"] > 20  # a live Python process with Kafka clients
        assert again["recovery_s"] > 0 and again["rss_mb"] > 20 and again["signing_mode"] == "entry"
        # the new process started after the kill and committed after it was ready
        assert again["kill_to_commit_s"] >= again["recovery_s"] - 0.05
        # it started from the snapshot the first process wrote after its full replay
        assert again["recovered_from"] == {"snapshot_seq": int(size), "tail_entries": 40, "snapshots_rejected": 0,
                                           "warm": False}
        # the standby took over warm: it had followed the leader up to the last entry
        standby = point["standby"]
        assert standby["recovered_from"]["warm"] is True and standby["recovered_from"]["tail_entries"] == 0
        assert standby["kill_to_commit_s"] >= standby["recovery_s"]
    assert set(result["growth"]) == {"recovery_s_ratio", "kill_to_commit_ratio", "rss_ratio"}


def test_bench_recovery_in_checkpoint_mode_replays_an_unsigned_tail(bootstrap: str) -> None:
    """``--signing-mode checkpoint``: the restarted signers run in that mode, and the restart
    adopts the snapshot and replays the tail they wrote (unsigned entries)."""
    result = bench_recovery.run(sizes=(300,), bootstrap=bootstrap, tail=60, signing_mode="checkpoint")
    assert result["signing_mode"] == "checkpoint"
    again = result["points"]["300"]["after_kill"]
    assert again["signing_mode"] == "checkpoint"  # as the restarted process reported it
    assert again["recovered_from"] == {"snapshot_seq": 300, "tail_entries": 60, "snapshots_rejected": 0, "warm": False}
    assert again["kill_to_commit_s"] >= again["recovery_s"] - 0.05
