"""``ledgerstream bench verifier`` end to end on a small ledger: every scenario runs for real
(the pure checker with and without the signature thread, a real worker process over Kafka)
and the report has the fields docs/benchmarks-verifier.md and the CLI read."""
from __future__ import annotations

import pytest

from ledgerstream.tools import bench_verifier

pytestmark = pytest.mark.integration


def test_bench_verifier_runs_every_scenario_on_a_real_worker(bootstrap: str) -> None:
    result = bench_verifier.run(entries=2000, bootstrap=bootstrap, threads=1)
    scenarios = result["scenarios"]
    assert scenarios["checker_1_thread"]["threads"] == 0 and scenarios["checker_threads"]["threads"] == 1
    for name in ("signer_sequencer", "checker_1_thread", "checker_threads"):
        assert scenarios[name]["per_s"] > 0 and scenarios[name]["entries"] == 2000
    worker = scenarios["worker_end_to_end"]
    assert worker["entries"] == 2000 and worker["wall_s"] > 0
    assert worker["restart"]["resumed_at"] == 2000 and worker["restart"]["restart_s"] > 0  # after a real kill -9
    assert worker["restart"]["checker_rss_mb"] > 0
    baseline = scenarios["checker_1_thread"]["journal_restore"]
    assert baseline["seconds"] >= 0 and baseline["journal_bytes_per_entry"] > 50
    goal = result["goal"]
    assert goal["target_per_s"] == round(2 * scenarios["signer_sequencer"]["per_s"])
    assert goal["checker_per_s"] == max(scenarios["checker_1_thread"]["per_s"], scenarios["checker_threads"]["per_s"])
    assert goal["worker_per_s"] == worker["steady_per_s"]
    assert goal["met"] == (worker["steady_per_s"] is not None and worker["steady_per_s"] >= goal["target_per_s"])
    assert goal["checker_met"] == (goal["checker_per_s"] >= goal["target_per_s"])
    assert result["compiled_entry_reader"] is True  # setup.sh builds it: the figures are the fast path's


def test_bench_verifier_compares_with_a_measured_signer_when_given_one(tmp_path) -> None:
    from click.testing import CliRunner

    from ledgerstream.cli.main import cli

    bad = tmp_path / "signer.json"
    bad.write_text('{"benchmark": "producer"}')
    result = CliRunner().invoke(cli, ["bench", "verifier", "--signer-json", str(bad)])
    assert result.exit_code == 2 and "entry-mode" in result.output
    report = {"backends": {"liboqs": {"modes": {"entry": {"entries_per_s": 4321}}},
                           "pyca": {"modes": {"checkpoint": {"entries_per_s": 321}}}}}
    assert bench_verifier.signer_rate_from(report, "liboqs") == 4321.0
    with pytest.raises(ValueError):
        bench_verifier.signer_rate_from(report, "pyca")
