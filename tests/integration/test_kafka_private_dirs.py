"""Kafka's folders hold the plain payloads: the embedded broker keeps them 0700."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ledgerstream.stack.kafka import KafkaBroker

pytestmark = pytest.mark.integration


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_running_broker_folders_are_0700(kafka_broker: KafkaBroker) -> None:
    for folder in (kafka_broker.data_dir, kafka_broker.data_dir / "data", kafka_broker.data_dir / "logs"):
        assert _mode(folder) == 0o700, folder
    assert (kafka_broker.data_dir / "data" / "meta.properties").is_file()  # really Kafka's log.dirs


def test_existing_open_folders_are_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    for folder in (data_dir, data_dir / "data", data_dir / "logs"):
        folder.mkdir()
        folder.chmod(0o755)
    KafkaBroker(data_dir).format_storage()
    for folder in (data_dir, data_dir / "data", data_dir / "logs"):
        assert _mode(folder) == 0o700, folder
