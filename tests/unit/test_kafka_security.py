"""Which credentials a Kafka client of a role uses (core/kafka_security.py)."""
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ledgerstream.core.errors import ConfigError
from ledgerstream.core.kafka_security import ENV_CONFIG, kafka_config, read_properties, role_env, write_properties


def stack_home(tmp_path: Path, bootstrap: str = "127.0.0.1:9999") -> Path:
    home = tmp_path / "home"
    (home / "kafka-clients").mkdir(parents=True)
    configs = {}
    for role in ("admin", "producer", "signer", "verifier", "reader"):
        path = home / "kafka-clients" / f"{role}.properties"
        write_properties(path, {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                                "sasl.username": role, "sasl.password": f"pw-{role}"})
        configs[role] = str(path)
    (home / "stack.json").write_text(json.dumps({"kafka": {"bootstrap": bootstrap, "security": {
        "protocol": "SASL_PLAINTEXT", "mechanism": "SCRAM-SHA-512", "client_configs": configs}}}))
    return home


def test_the_dev_stack_file_of_the_role_is_used_for_its_bootstrap(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(ENV_CONFIG, raising=False)
    home = stack_home(tmp_path)
    conf = kafka_config("127.0.0.1:9999", "signer", {"acks": "all"}, home_dir=home)
    assert conf == {"bootstrap.servers": "127.0.0.1:9999", "security.protocol": "SASL_PLAINTEXT",
                    "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "signer", "sasl.password": "pw-signer",
                    "acks": "all"}
    # another broker than the stack's: no credentials are sent to it
    assert kafka_config("10.0.0.1:9092", "signer", home_dir=home) == {"bootstrap.servers": "10.0.0.1:9092"}


def test_the_environment_file_wins_for_every_role(tmp_path, monkeypatch) -> None:
    home = stack_home(tmp_path)
    own = tmp_path / "mine.properties"
    own.write_text("# ops-issued\nsecurity.protocol=SASL_SSL\nsasl.username=team-a\n"
                   "bootstrap.servers=ignored:1\n")
    monkeypatch.setenv(ENV_CONFIG, str(own))
    for role in ("producer", "reader"):
        conf = kafka_config("127.0.0.1:9999", role, home_dir=home)
        assert conf["sasl.username"] == "team-a" and conf["bootstrap.servers"] == "127.0.0.1:9999"
    assert role_env("127.0.0.1:9999", "admin", home_dir=home) == {ENV_CONFIG: str(own)}


def test_credentials_files_are_owner_only(tmp_path) -> None:
    path = tmp_path / "c.properties"
    write_properties(path, {"sasl.password": "x"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("text", ["sasl.username\n", "ssl.keystore.password=x\n", "group.id=steal\n"])
def test_unknown_or_malformed_lines_are_refused(tmp_path, text) -> None:
    path = tmp_path / "bad.properties"
    path.write_text(text)
    with pytest.raises(ConfigError, match="bad.properties:1"):
        read_properties(path)


def test_missing_and_oversized_files_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_properties(tmp_path / "missing.properties")
    big = tmp_path / "big.properties"
    big.write_text("#" * 70_000)
    with pytest.raises(ConfigError, match="larger than"):
        read_properties(big)


def test_an_unknown_role_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        kafka_config("h:1", "superuser")
