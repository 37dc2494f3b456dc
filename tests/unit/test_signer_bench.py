"""ledgerstream.tools.bench_signer: the pure parts (statistics, the table, the CLI wiring).
The measurement itself needs its own broker and minutes; `ledgerstream bench signer` runs it."""
from __future__ import annotations

import io

import pytest
from click.testing import CliRunner
from rich.console import Console

from ledgerstream.tools import bench_signer

pytestmark = pytest.mark.unit

RESULT = {
    "benchmark": "signer", "events": 5000, "latency_events": 1000,
    "machine": {"cpus": 2, "python": "3.11", "platform": "linux", "load_avg_1m_before": 0.5,
                "load_avg_1m_after": 1.5},
    "backends": {
        "liboqs": {"raw_sign_per_s": 4800, "raw_sign_cpu_us": 208, "modes": {
            "entry": {"entries_per_s": 4000, "sequencing_per_s": 4100, "ratio_to_raw_sign": 0.83,
                      "cpu_us_per_entry": {"signer": 420, "broker": 90}, "sign_share_of_signer_cpu": 0.5,
                      "latency_ms": {"p50": 40.0, "p99": 90.0, "max": 120.0, "mean": 45.0},
                      "latency_offered_per_s": 1000, "entry_bytes_mean": 3900},
            "checkpoint": {"entries_per_s": 6000, "sequencing_per_s": 6100, "ratio_to_raw_sign": 1.25,
                           "cpu_us_per_entry": {"signer": 200, "broker": 60},
                           "latency_ms": {"p50": 35.0, "p99": 80.0, "max": 99.0, "mean": 40.0},
                           "latency_offered_per_s": 1000, "entry_bytes_mean": 560}}},
        "pyca": {"raw_sign_per_s": 600, "raw_sign_cpu_us": 1660, "modes": {
            "entry": {"entries_per_s": 420, "sequencing_per_s": 430, "ratio_to_raw_sign": 0.7,
                      "cpu_us_per_entry": {"signer": 1900, "broker": 90},
                      "latency_ms": {"p50": 60.0, "p99": 150.0, "max": 200.0, "mean": 70.0},
                      "latency_offered_per_s": 210, "entry_bytes_mean": 3900}}},
    },
    "goal": {"entry_mode_ratio_to_raw_sign": 0.8, "met": {"liboqs": True, "pyca": False}},
}


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench_signer._percentiles(values) == {"p50": 51.0, "p99": 100.0, "max": 100.0, "mean": 50.5}
    assert bench_signer._percentiles([3.0])["p99"] == 3.0


def test_render_shows_every_row_and_the_goal() -> None:
    out = io.StringIO()
    bench_signer.render(RESULT, Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    for needle in ("liboqs", "pyca", "checkpoint", "4,000", "0.83", "0.70", "1.25", "3,900", "420+90 (208)", "0.5"):
        assert needle in text, needle
    assert "liboqs met" in text and "pyca NOT met" in text
    assert "load 0.5 -> 1.5" in text


def test_render_shows_the_kafka_floor_beside_checkpoint_mode() -> None:
    out = io.StringIO()
    floor = {"records_per_s": 80654, "record_bytes": 528, "record_bytes_mean": 528,
             "cpu_us_per_record": {"relay": 7, "broker": 10}, "checkpoint_mode_share": 0.22}
    bench_signer.render({**RESULT, "kafka_floor": floor}, Console(file=out, width=300, color_system=None))
    text = " ".join(out.getvalue().split())
    assert "Kafka floor" in text and "80,654 records/s" in text and "7+10" in text and "0.22 of it" in text
    plain = io.StringIO()
    bench_signer.render(RESULT, Console(file=plain, width=300, color_system=None))
    assert "Kafka floor" not in plain.getvalue()


def test_cli_prints_json_and_writes_out(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from ledgerstream.cli.bench import bench

    calls = {}

    def fake_run(events, **kwargs):  # the CLI is thin: it passes the options and prints
        calls.update(events=events, **kwargs)
        return RESULT

    monkeypatch.setattr(bench_signer, "run", fake_run)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(bench, ["signer", "--json", "--events", "300", "--latency-events", "20",
                                     "--backend", "pyca", "--signing-nice", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text()) == RESULT
    assert calls["events"] == 300 and calls["latency_events"] == 20 and calls["backends"] == ["pyca"]
    assert calls["signing_nice"] == 0
    table = CliRunner().invoke(bench, ["signer", "--events", "300"])
    assert table.exit_code == 0 and "ratio" in table.output and calls["signing_nice"] is None
    bad = CliRunner().invoke(bench, ["signer", "--signing-nice", "-21"])
    assert bad.exit_code == 2 and "-21" in bad.output


def test_ratios_use_the_raw_rate_measured_before_and_after() -> None:
    row = {"raw_sign_per_s": 4000, "raw_sign_cpu_us": 250, "raw_sign_per_s_after_entry": 6000,
           "raw_sign_cpu_us_after_entry": 150, "modes": {
               "entry": {"entries_per_s": 4000, "cpu_us_per_entry": {"signer": 400, "broker": 80}},
               "checkpoint": {"entries_per_s": 9000, "cpu_us_per_entry": {"signer": 100, "broker": 40}}}}
    out = bench_signer._with_ratios(row)
    assert out["raw_sign_per_s_ref"] == 5000
    assert out["modes"]["entry"]["ratio_to_raw_sign"] == 0.8
    assert out["modes"]["checkpoint"]["ratio_to_raw_sign"] == 1.8
    assert out["modes"]["entry"]["sign_share_of_signer_cpu"] == 0.5  # 200 / 400
    assert "sign_share_of_signer_cpu" not in out["modes"]["checkpoint"]
    # an older result without the second measurement: the first alone
    single = bench_signer._with_ratios({"raw_sign_per_s": 4000, "raw_sign_cpu_us": 250, "modes": {
        "entry": {"entries_per_s": 3000, "cpu_us_per_entry": {"signer": 500, "broker": 80}}}})
    assert single["modes"]["entry"]["ratio_to_raw_sign"] == 0.75


def test_render_shows_both_raw_rates() -> None:
    import copy

    result = copy.deepcopy(RESULT)
    result["backends"]["liboqs"]["raw_sign_per_s_after_entry"] = 5100
    out = io.StringIO()
    bench_signer.render(result, Console(file=out, width=220, color_system=None))
    assert "4,800 / 5,100" in out.getvalue()
