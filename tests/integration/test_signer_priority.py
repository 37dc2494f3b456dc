"""The real signer process runs its entry-signing thread, and only that thread, at the
``--signing-nice`` value it was given, says so in its status, and signs with it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledgerstream.core import mldsa
from support.actions import make_action
from test_signer_helpers import _close_tails  # noqa: F401  (autouse fixture)
from test_signer_helpers import TopicTail, action_items, check_ledger, produce, wait_until

pytestmark = pytest.mark.integration


def _thread_nice(pid: int) -> dict[int, int]:
    """Each thread's nice value, from /proc (field 19 of the stat line)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        out[int(tid)] = int(stat[stat.rindex(")") + 2:].split()[16])
    return out


def test_only_the_signing_thread_gets_the_nice_value(bootstrap, topics, start_signer, signer_key_path) -> None:
    key = mldsa.load_private_key(signer_key_path)
    if not key.sign_many_releases_gil:
        pytest.skip("no signing thread without liboqs and its sign_many shim")
    own = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = min(19, own + 7)  # raising a nice value needs no privilege
    signer = start_signer("--no-leader-election", "--signing-nice", str(wanted))
    signer.wait_role("leader")
    assert signer.status()["signing_thread_nice"] == wanted
    nice = _thread_nice(signer.pid)
    assert sorted(nice.values()).count(wanted) == 1, nice
    assert nice[signer.pid] == own  # the loop thread keeps the process's priority

    actions = [make_action(agent_id=f"agent-{i % 3}", payload={"i": i}) for i in range(40)]
    produce(bootstrap, topics.actions, action_items(actions))
    tail = TopicTail(bootstrap, topics.entries)
    wait_until(lambda: tail.poll() >= 40, 60, "40 entries", on_timeout=signer.log)
    check_ledger([rec for _, rec in tail.decoded("LedgerEntry")], key.public_key())
