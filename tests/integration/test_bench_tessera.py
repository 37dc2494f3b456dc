"""``bench signer --compare tessera``: the Tessera v1.0.4 harness builds with Go from its
pinned go.mod and appends to a real POSIX log; the comparison divides the two rates. The
rates are not asserted (a benchmark), only that Tessera really appended entries."""
from __future__ import annotations

import shutil

import pytest

from ledgerstream.tools import bench_tessera

pytestmark = pytest.mark.integration


@pytest.mark.skipif(shutil.which("go") is None, reason="no Go toolchain")
def test_the_harness_appends_to_a_real_tessera_log() -> None:
    result = bench_tessera.run(seconds=2.0, warmup=0.5, adders=64)
    assert result["tessera"] == "v1.0.4" and result["driver"] == "posix"
    assert result["entries"] > 0 and result["failed"] == 0
    assert abs(result["entries_per_s"] - result["entries"] / result["seconds"]) <= 0.01 * result["entries_per_s"] + 1
    assert bench_tessera.compare(2 * result["entries_per_s"], result)["ratio"] == 2.0


def test_compare_without_go_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_tessera.shutil, "which", lambda name: None)
    result = bench_tessera.run(seconds=2.0)
    assert result == {"skipped": "no Go toolchain (go) on PATH"}
    assert bench_tessera.compare(1000, result)["ratio"] is None
