"""CLI helpers of the verifier commands that need no Kafka: --since parsing, alert records,
and the status table read from status files."""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ledgerstream.cli.alerts import parse_since
from ledgerstream.cli.main import cli
from ledgerstream.core import mldsa
from ledgerstream.core.wire import codec
from ledgerstream.core.alert_signature import VerifierKey, check_alert
from ledgerstream.core.verify import Finding, Kind
from ledgerstream.core.alerting import alert_id, encode_alert

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("text,want", [
    ("90s", NOW - dt.timedelta(seconds=90)), ("15m", NOW - dt.timedelta(minutes=15)),
    ("2h", NOW - dt.timedelta(hours=2)), ("1.5d", NOW - dt.timedelta(hours=36)), ("1w", NOW - dt.timedelta(days=7)),
    ("2026-02-01T00:00:00Z", dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)),
    ("2026-02-01T01:00:00+01:00", dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)),
    ("2026-02-01", dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)),
])
def test_parse_since(text: str, want: dt.datetime) -> None:
    assert parse_since(text, now=NOW) == want


def test_parse_since_rejects_nonsense() -> None:
    with pytest.raises(click.BadParameter):
        parse_since("yesterday", now=NOW)


def test_alert_record_round_trips_and_its_id_is_stable() -> None:
    f = Finding.make(Kind.FORK, "a different entry claims seq 7", seq=7, agent_id="a", topic="entries", offset=14,
                     expected=b"\x01" * 32)
    signing_key = mldsa.PrivateKey.from_seed(bytes(range(32)), "pyca")
    key, value = encode_alert(f, "v1", 123, signing_key)
    _, alert = codec.decode(value, expect="Alert")
    # signed with the verifier's key, as published
    pub = signing_key.public_key()
    assert alert["key_id"] == pub.key_id and len(alert["signature"]) == mldsa.SIGNATURE_SIZE
    assert check_alert(alert, {pub.key_id: VerifierKey("v1", pub)}).verdict.value == "verified"
    assert key == b"fork"
    assert (alert["kind"], alert["severity"], alert["seq_from"], alert["seq_to"], alert["verifier_id"]) == \
        ("fork", "critical", 7, 7, "v1")
    assert alert["evidence"]["expected"] == "01" * 32
    assert alert["alert_id"] == alert_id(f, "v1") == codec.decode(encode_alert(f, "v1", 999, signing_key)[1])[1]["alert_id"]
    assert alert_id(f, "v2") != alert["alert_id"]


def test_verifiers_status_reads_status_files(tmp_path: Path) -> None:
    folder = tmp_path / "verifiers" / "v1"
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps({
        "id": "v1", "position": 42, "lag": 0, "healthy": True, "alerts": {"gap": 1},
        "last_checkpoint": {"tree_size": 40}, "updated_at": time.time(), "metrics_url": "http://x/metrics"}))
    result = CliRunner().invoke(cli, ["verifiers", "status", "--json", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert (row["id"], row["position"], row["lag"], row["health"], row["alerts"]) == ("v1", 42, 0, "healthy", {"gap": 1})
    (folder / "status.json").write_text(json.dumps({"id": "v1", "position": 42, "healthy": False,
                                                    "updated_at": time.time()}))
    assert CliRunner().invoke(cli, ["verifiers", "status", "--home", str(tmp_path)]).exit_code == 1
