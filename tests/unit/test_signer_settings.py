"""The signer's command line reaches its settings, and settings refuse what cannot work."""
from __future__ import annotations

from pathlib import Path

import pytest

from ledgerstream.core.config import Topics
from ledgerstream.signer_worker.__main__ import parse_args, settings_from_args
from ledgerstream.signer_worker.settings import SignerSettings


def _settings(tmp_path: Path, *argv: str) -> SignerSettings:
    return settings_from_args(parse_args(["--home", str(tmp_path), "--bootstrap", "127.0.0.1:9", *argv]))


def test_the_lease_session_timeout_defaults_to_kafkas_floor_and_can_be_set(tmp_path: Path) -> None:
    assert _settings(tmp_path).session_timeout_ms == 6000  # Kafka's group.min.session.timeout.ms default
    assert _settings(tmp_path, "--session-timeout-ms", "2500").session_timeout_ms == 2500


@pytest.mark.parametrize("ms", [0, -1])
def test_a_session_timeout_that_is_not_positive_is_refused(ms: int) -> None:
    with pytest.raises(ValueError, match="session_timeout_ms must be positive"):
        SignerSettings(bootstrap="127.0.0.1:9", topics=Topics.with_prefix("t."), key_path=Path("k"), session_timeout_ms=ms)


@pytest.mark.parametrize(("flag", "attr", "entry", "checkpoint"), [
    # docs/signer.md: 2,000 records per transaction in entry mode, 10,000 in checkpoint mode
    ("--batch-size", "batch_size", 2000, 10_000),
    # docs/signer.md: a snapshot every 10,000 entries in entry mode, 50,000 in checkpoint mode
    ("--snapshot-every", "snapshot_every", 10_000, 50_000),
])
def test_a_default_by_signing_mode_and_an_explicit_value_wins(tmp_path: Path, flag: str, attr: str, entry: int,
                                                              checkpoint: int) -> None:
    assert getattr(_settings(tmp_path), attr) == entry
    assert getattr(_settings(tmp_path, "--signing-mode", "checkpoint"), attr) == checkpoint
    assert getattr(_settings(tmp_path, "--signing-mode", "checkpoint", flag, "300"), attr) == 300
    assert getattr(_settings(tmp_path, flag, "7"), attr) == 7


@pytest.mark.parametrize("size", [-1, -2000])
def test_a_negative_batch_size_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="batch_size must be positive"):
        SignerSettings(bootstrap="127.0.0.1:9", topics=Topics.with_prefix("t."), key_path=Path("k"), batch_size=size)


def test_no_snapshots_stays_possible_in_either_mode_and_a_negative_interval_is_refused(tmp_path: Path) -> None:
    assert _settings(tmp_path, "--signing-mode", "checkpoint", "--snapshot-every", "0").snapshot_every == 0
    with pytest.raises(ValueError, match="snapshot_every must be >= 0"):
        _settings(tmp_path, "--snapshot-every", "-1")
