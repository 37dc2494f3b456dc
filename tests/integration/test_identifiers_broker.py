"""Clean identifiers on the real broker (issue 19, item 4): the real signer dead-letters raw
actions with invisible or control characters in their ids, or with a payload that is not
canonical JSON; and the CLI's human output of an old ledger holding such ids writes no raw
ESC/NUL/bidi bytes to the terminal."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerstream.core import mldsa, records
from ledgerstream.core.wire import codec
from support.actions import make_action
from support.ledger_builder import LedgerBuilder, LedgerWriter, entry_bytes
from test_signer_helpers import _close_tails  # noqa: F401  (autouse fixture)
from test_signer_helpers import TopicTail, action_items, check_ledger, produce, wait_until

pytestmark = pytest.mark.integration

CLI = [str(Path(sys.executable).with_name("ledgerstream"))]
BAD_AGENTS = {"agent\x00nul": 0x0000, "agent\x1b[31m\r\n": 0x001B, "agent\u202etxt.exe": 0x202E,
              "base-agent\u200b": 0x200B, "agent\u0378": 0x0378}


def _with_payload(payload: bytes) -> dict:
    salt = os.urandom(records.SALT_LEN)
    return dict(make_action(agent_id="agent-p"), payload=payload, payload_salt=salt,
                payload_hash=records.payload_commitment(salt, payload))


def test_signer_dead_letters_unclean_ids_and_non_canonical_payloads(bootstrap, topics, start_signer,
                                                                    signer_key_path) -> None:
    pub = mldsa.load_private_key(signer_key_path).public_key()
    bad = [codec.encode("ActionEvent", make_action(agent_id=a)) for a in BAD_AGENTS]
    bad += [codec.encode("ActionEvent", _with_payload(p)) for p in (b'{"b":1, "a":2}', b"not json")]
    good = [make_action(agent_id="agent-ok", payload={"i": i}) for i in range(3)]
    signer = start_signer()
    produce(bootstrap, topics.actions, [(b"k", raw) for raw in bad] + action_items(good))
    tail, dl = TopicTail(bootstrap, topics.entries), TopicTail(bootstrap, topics.deadletter)
    wait_until(lambda: tail.poll() >= 3 and dl.poll() >= len(bad), 60, "entries and dead letters",
               on_timeout=signer.log)
    entries = [rec for _, rec in tail.decoded("LedgerEntry")]
    check_ledger(entries, pub)
    assert {e["action"]["agent_id"] for e in entries} == {"agent-ok"}
    letters = [rec for _, rec in dl.decoded("DeadLetter")]
    assert sorted(letter["original"] for letter in letters) == sorted(bad)
    assert {letter["reason"] for letter in letters} == {"invalid_field"}
    details = " ".join(letter["detail"] for letter in letters)
    for code in BAD_AGENTS.values():
        assert f"U+{code:04X}" in details
    assert details.count("payload") >= 2


def test_agents_human_output_escapes_old_unclean_ids(bootstrap, topics, ls_home) -> None:
    key = mldsa.PrivateKey.generate()
    builder = LedgerBuilder(key)
    for agent in [*BAD_AGENTS, "[red]markup", "base-agent"]:
        builder.entry(agent_id=agent)
    builder.entry(agent_id="last")  # confirms the previous entry (the core adopts an entry once it is continued)
    LedgerWriter(bootstrap, topics).commit([entry_bytes(e) for e in builder.entries])
    pem = ls_home / "signer-under-test.pub.pem"
    pem.write_bytes(mldsa.public_key_pem(key.public_key()))
    env = {**os.environ, "LEDGERSTREAM_HOME": str(ls_home), "COLUMNS": "200"}
    run = subprocess.run(CLI + ["agents", "--bootstrap", bootstrap, "--topic", topics.entries, "--trusted-key", str(pem)],
                         env=env, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = run.stdout.decode("utf-8")
    for raw in ("\x00", "\x1b", "\r", "\u202e", "\u200b", "\u0378"):
        assert raw not in out, repr(raw)
    for shown in ("agent\\x00nul", "agent\\x1b[31m\\x0d\\x0a", "agent\\u202etxt.exe", "base-agent\\u200b",
                  "agent\\u0378", "[red]markup"):
        assert shown in out, (shown, out)
