"""Timestamp checks of the checker with real RFC 3161 tokens from the dev TSA, and the
``verify`` CLI's exit codes on an intact ledger and without a TSA CA."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ledgerstream.cli.main import cli
from ledgerstream.core.config import Topics
from ledgerstream.core.errors import ConfigError
from ledgerstream.core.mldsa import PrivateKey
from ledgerstream.core.verify import CHECKPOINTS, ENTRIES, Checker, CheckerConfig
from support.ledger_builder import LedgerBuilder, LedgerWriter, enc, entry_bytes, timestamp_token
from test_verifier_worker import verifier_home

pytestmark = pytest.mark.integration

KEY = PrivateKey.from_seed(bytes(range(32)))


def checker(dev_tsa: Any, with_ca: bool = True) -> Checker:
    return Checker(CheckerConfig.from_keys([KEY.public_key()], tsa_ca=dev_tsa.ca_cert.read_bytes() if with_ca else None))


def kinds(ch: Checker, records: list[tuple[str, bytes]]) -> list[str]:
    found, offsets = [], {ENTRIES: 0, CHECKPOINTS: 0}
    for topic, raw in records:
        found += ch.feed(topic, offsets[topic], raw)
        offsets[topic] += 1
    return [f.kind.value for f in found + ch.finish()]


def anchored_ledger(dev_tsa: Any, builder: LedgerBuilder, token_for: bytes | None = None) -> list[tuple[str, bytes]]:
    out = [(ENTRIES, entry_bytes(e)) for e in builder.many(5)]
    cp = builder.checkpoint()
    token = timestamp_token(dev_tsa.url, cp["body"] if token_for is None else token_for)
    return out + [(CHECKPOINTS, enc("Checkpoint", cp)), (CHECKPOINTS, enc("TimestampAnchor", builder.anchor(cp, token)))]


def test_anchor_verifies_and_counts(dev_tsa: Any) -> None:
    ch = checker(dev_tsa)
    assert kinds(ch, anchored_ledger(dev_tsa, LedgerBuilder(KEY))) == []
    assert ch.stats.timestamps_verified == 1


def test_without_a_ca_tokens_are_counted_unverified_not_alerted(dev_tsa: Any) -> None:
    ch = checker(dev_tsa, with_ca=False)
    assert kinds(ch, anchored_ledger(dev_tsa, LedgerBuilder(KEY))) == []
    assert ch.stats.timestamps_unverified == 1 and ch.stats.timestamps_verified == 0


def test_anchor_for_a_checkpoint_the_ledger_does_not_have(dev_tsa: Any) -> None:
    builder = LedgerBuilder(KEY)
    records = anchored_ledger(dev_tsa, builder)
    stranger = LedgerBuilder(KEY, origin="elsewhere")
    stranger.many(2)
    cp = stranger.checkpoint()
    records.append((CHECKPOINTS, enc("TimestampAnchor", stranger.anchor(cp, timestamp_token(dev_tsa.url, cp["body"])))))
    assert kinds(checker(dev_tsa), records) == ["timestamp_invalid"]


def test_token_that_predates_its_checkpoint(dev_tsa: Any) -> None:
    builder = LedgerBuilder(KEY, now_us=4_102_444_800_000_000)  # the checkpoint claims 2100-01-01
    assert kinds(checker(dev_tsa), anchored_ledger(dev_tsa, builder)) == ["timestamp_out_of_order"]


def test_per_entry_tokens(dev_tsa: Any) -> None:
    builder = LedgerBuilder(KEY)
    good = builder.entry("agent-a")
    good["timestamp_token"] = timestamp_token(dev_tsa.url, bytes(good["entry_hash"]))  # not hashed: no reseal
    bad = builder.entry("agent-b")
    bad["timestamp_token"] = timestamp_token(dev_tsa.url, b"not this entry")
    ch = checker(dev_tsa)
    assert kinds(ch, [(ENTRIES, entry_bytes(good)), (ENTRIES, entry_bytes(bad))]) == ["timestamp_invalid"]
    assert ch.position == 2  # an invalid token does not unmake the entry


def test_verify_cli_exit_codes(bootstrap: str, topics: Topics, dev_tsa: Any, tmp_path: Path) -> None:
    builder, writer = LedgerBuilder(KEY), LedgerWriter(bootstrap, topics)
    for _ in range(3):
        es = builder.many(40)
        cp = builder.checkpoint()
        writer.commit([entry_bytes(e) for e in es], [enc("Checkpoint", cp)])
        writer.commit(checkpoints=[enc("TimestampAnchor", builder.anchor(cp, timestamp_token(dev_tsa.url, cp["body"])))])
    env = {"LEDGERSTREAM_TOPIC_PREFIX": topics.entries[: -len("entries")]}
    args = ["verify", "--json", "--bootstrap", bootstrap]
    home = verifier_home(tmp_path / "with-ca", KEY, dev_tsa.ca_cert)
    ok = CliRunner().invoke(cli, [*args, "--home", str(home)], env=env)
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert (doc["ok"], doc["entries"], doc["checkpoints"], doc["timestamps"], doc["errors"]) == (True, 120, 3, 3, [])
    no_ca = CliRunner().invoke(cli, [*args, "--home", str(verifier_home(tmp_path / "no-ca", KEY))], env=env)
    assert no_ca.exit_code == 2 and json.loads(no_ca.stdout)["ok"] is False
    no_key = CliRunner().invoke(cli, [*args, "--home", str(tmp_path / "empty")], env=env)
    assert isinstance(no_key.exception, ConfigError)  # ledgerstream's main() maps it to exit 2
    assert "no trusted signer keys" in str(no_key.exception)
