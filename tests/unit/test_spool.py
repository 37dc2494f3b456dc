"""The spool journal: order, resume after reopen, segment rolling, locking, corruption
quarantine, and the full-spool policy (newest events refused, counted, logged)."""
from __future__ import annotations

import json
import logging
import os

import pytest

from ledgerstream.core.wire import codec
from ledgerstream.producers.ledger import Ledger
from ledgerstream.producers.spool import FRAME, QUARANTINE, Spool, SpoolBusy, open_for_agent

pytestmark = pytest.mark.unit


class _AnyInt:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and other > 0


ANY_INT = _AnyInt()


def bodies(n: int, size: int = 40) -> list[bytes]:
    return [f"record-{i:05d}-".encode().ljust(size, b".") for i in range(n)]


def drain(spool: Spool) -> list[bytes]:
    return list(spool.records())


def test_append_read_ack_resume(tmp_path):
    spool = Spool(tmp_path / "s", "agent")
    ends = spool.append(bodies(10))
    assert drain(spool) == bodies(10) and spool.pending_records == 10
    spool.ack(ends[3], 4, 4 * (FRAME.size + 40))
    spool.close()
    again = Spool(tmp_path / "s")
    assert again.agent_id == "agent"
    assert again.pending_records == 6 and drain(again) == bodies(10)[4:]
    again.append([b"late"])
    assert drain(again)[-1] == b"late"
    again.close()


def test_unsaved_ack_resends_after_crash(tmp_path):
    """An ack not yet saved is lost in a crash: records are sent again, never skipped."""
    spool = Spool(tmp_path / "s", "agent")
    ends = spool.append(bodies(5))
    spool.save_cursor()
    spool.ack(ends[-1], 5, 0)  # delivered, cursor not saved: then the process dies
    os.close(spool._lock_fd)
    again = Spool(tmp_path / "s")
    assert drain(again) == bodies(5)
    again.close()


def test_segments_roll_and_delivered_ones_are_deleted(tmp_path):
    spool = Spool(tmp_path / "s", "agent", segment_bytes=500)
    ends = spool.append(bodies(40))
    segments = sorted(p.name for p in (tmp_path / "s").glob("*.seg"))
    assert len(segments) > 3
    assert drain(spool) == bodies(40)
    spool.ack(ends[29], 30, 0)
    spool.save_cursor()
    assert len(list((tmp_path / "s").glob("*.seg"))) < len(segments)
    spool.close()
    again = Spool(tmp_path / "s")
    assert drain(again) == bodies(40)[30:]
    last = again.append([b"x"])[-1]
    again.ack(last, again.pending_records, again.pending_bytes)
    again.close()  # everything delivered: no segment is kept
    assert list((tmp_path / "s").glob("*.seg")) == []
    third = Spool(tmp_path / "s")
    assert third.pending_records == 0 and drain(third) == []
    third.close()


def test_lock_is_exclusive_and_replicas_get_their_own_spool(tmp_path):
    first = open_for_agent(tmp_path, "agent")
    with pytest.raises(SpoolBusy):
        Spool(tmp_path / "agent")
    second = open_for_agent(tmp_path, "agent")
    assert first.path.name == "agent" and second.path.name == "agent@1"
    second.close()
    first.close()
    assert open_for_agent(tmp_path, "agent").path.name == "agent"


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_damaged_frame_is_quarantined_alone_and_the_rest_is_delivered(tmp_path, caplog, damage):
    """Only the damaged frame is lost: the scan resyncs on the next valid frame (issue 20:
    one flipped byte once quarantined every frame after it)."""
    spool = Spool(tmp_path / "s", "agent")
    spool.append(bodies(10))
    spool.close()
    seg = next((tmp_path / "s").glob("*.seg"))
    data = bytearray(seg.read_bytes())
    frame = FRAME.size + 40
    if damage == "flip":
        data[6 * frame + FRAME.size + 5] ^= 0xFF  # body of record 6
    elif damage == "truncate":
        data = data[:-7]  # torn last frame
    else:
        data[6 * frame:6 * frame + 2] = b"XX"  # bad magic at record 6
    seg.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="ledgerstream.producer.spool"):
        again = Spool(tmp_path / "s")
    lost = 9 if damage == "truncate" else 6
    expected = [b for i, b in enumerate(bodies(10)) if i != lost]
    assert drain(again) == expected, "every valid frame is still delivered, in order"
    assert again.pending_records == 9
    (quarantined,) = again.quarantined
    assert quarantined.parent == tmp_path / "s" / QUARANTINE
    assert quarantined.read_bytes() == bytes(data), "the whole damaged segment is kept for inspection"
    assert quarantined.stat().st_mode & 0o777 == 0o600, "spools hold payloads: the copy stays private"
    note = quarantined.with_name(quarantined.name + ".json")
    assert note.stat().st_mode & 0o777 == 0o600
    reason = json.loads(note.read_text())
    assert reason["agent_id"] == "agent" and reason["frames_kept"] == 9
    lost_bytes = frame - 7 if damage == "truncate" else frame
    assert reason["lost_bytes"] == lost_bytes and reason["damaged"][0]["start"] == lost * frame
    assert any("damaged" in r.getMessage() for r in caplog.records)
    again.append([b"after"])  # the rewritten segment takes new records behind the kept ones
    assert drain(again) == expected + [b"after"]
    again.close()
    third = Spool(tmp_path / "s")
    assert third.quarantined == [], "reported once, not on every open"
    assert drain(third) == expected + [b"after"]
    third.close()


def test_damage_in_several_places_and_behind_the_cursor(tmp_path):
    """8 bytes flipped in the middle of a long segment, a second damaged frame later, and a
    cursor already past the first damage: nothing delivered comes back, nothing valid is lost."""
    spool = Spool(tmp_path / "s", "agent")
    ends = spool.append(bodies(700))
    spool.ack(ends[99], 100, ends[99][1])  # the first 100 were delivered
    spool.close()
    seg = next((tmp_path / "s").glob("*.seg"))
    data = bytearray(seg.read_bytes())
    frame = FRAME.size + 40
    for i in range(8):
        data[50 * frame + 20 + i] ^= 0x5A      # record 50 (already delivered)
        data[353 * frame + 20 + i] ^= 0x5A     # record 353
    data[600 * frame + 3] ^= 0x01              # record 600's length
    seg.write_bytes(bytes(data))
    again = Spool(tmp_path / "s")
    want = [b for i, b in enumerate(bodies(700)) if i >= 100 and i not in (353, 600)]
    assert drain(again) == want and again.pending_records == len(want)
    assert len(again.quarantined) == 1
    again.close()


def test_full_spool_refuses_newest_counts_and_logs(tmp_path, caplog):
    led = Ledger("agent-full", spool_dir=tmp_path / "spool", max_spool_bytes=20_000)
    with caplog.at_level(logging.ERROR, logger="ledgerstream.producer"):
        ids = [led.emit("tool:x", {"i": i, "pad": "p" * 200}) for i in range(200)]
    stats = led.stats()
    assert len(set(ids)) == 200, "emit never raises, even when full"
    assert 0 < stats["dropped"] < 200
    assert stats["emitted"] == 200 - stats["dropped"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "is full" in r.getMessage()]
    assert len(errors) == 1, "one error at the first drop, not one per event"
    led.close()
    spool = Spool(tmp_path / "spool" / "agent-full")
    assert spool.pending_records == stats["emitted"] + 1, "the drops are recorded at close at the latest"
    gap = codec.decode(list(spool.records())[-1], expect="ActionEvent")[1]
    assert gap["action_type"] == "ledgerstream:dropped"
    assert json.loads(gap["payload"]) == {"dropped": stats["dropped"], "first_dropped_at": ANY_INT,
                                          "last_dropped_at": ANY_INT, "reason": "spool full",
                                          "max_spool_bytes": 20_000}
    # the bound is checked against a size estimated at emit time, kept just below the real size
    assert 20_000 * 0.8 < spool.pending_bytes <= 20_000 * 1.1
    spool.close()


def test_sync_skips_spools_held_by_live_agents(tmp_path):
    from ledgerstream.producers.sync import sync_spools

    led = Ledger("live", spool_dir=tmp_path)
    led.emit("tool:x", {})
    assert led.flush(5) == 1  # journaled, nothing to deliver to
    report = sync_spools(tmp_path, "127.0.0.1:9", "unused", timeout=1)
    assert (report.busy, report.agents, report.sent) == (1, 0, 0)
    led.close()
    spool = Spool(tmp_path / "live")
    assert spool.pending_records == 1, "sync did not touch the live agent's spool"
    spool.close()
