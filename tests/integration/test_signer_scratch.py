import time, pytest
from support.actions import make_action
from test_signer_helpers import *
from ledgerstream.core import mldsa

def test_smoke(bootstrap, topics, start_signer, signer_key_path):
    pub = mldsa.load_private_key(signer_key_path).public_key()
    t0=time.monotonic()
    s = start_signer("--checkpoint-every", "50")
    s.wait_role("leader"); print("leader after", time.monotonic()-t0)
    acts=[make_action(agent_id=f"a{i%3}") for i in range(500)]
    t1=time.monotonic()
    produce(bootstrap, topics.actions, action_items(acts))
    tail=TopicTail(bootstrap, topics.entries)
    wait_until(lambda: tail.poll()>=500, 60, "entries", on_timeout=s.log)
    print("500 entries after", time.monotonic()-t1)
    entries=[r for _, r in tail.decoded("LedgerEntry")]
    check_ledger(entries, pub)
    s.kill9(); t2=time.monotonic()
    s2 = start_signer("--checkpoint-every", "50")
    s2.wait_role("leader"); print("restart leader after", time.monotonic()-t2)
    print(s2.status())
    cpt=TopicTail(bootstrap, topics.checkpoints)
    time.sleep(2); cpt.poll()
    cps, anchors = split_checkpoints(cpt.decoded())
    print(len(cps), [c["tree_size"] for c in cps])
    check_checkpoints(entries, cps, pub)
    print(s2.log())
