"""The buffer and offset bookkeeping between the SIEM exporter's consumer and its sink."""
from __future__ import annotations

import threading

import pytest

from ledgerstream.tools.siem.pipeline import BoundedBuffer, Item, OffsetTracker
from ledgerstream.tools.siem.sinks import open_sink
from ledgerstream.tools.siem.sinks.http import HttpSink
from ledgerstream.tools.siem.sinks.stream import FileSink, StdoutSink
from ledgerstream.tools.siem.sinks.syslog_tcp import SyslogTcpSink

pytestmark = pytest.mark.unit


def items(topic: str, partition: int, offsets: range) -> list[Item]:
    return [Item(topic, partition, o, f"line {o}", "entry") for o in offsets]


def test_buffer_counts_in_flight_batches_against_capacity() -> None:
    buf = BoundedBuffer(10)
    buf.put(items("e", 0, range(8)))
    assert (buf.size, buf.room()) == (8, 2)
    batch = buf.take(5, timeout=0)
    assert [i.offset for i in batch] == [0, 1, 2, 3, 4]
    assert buf.size == 8 and not buf.idle  # taken but not yet written: still held
    buf.done(batch)
    assert buf.size == 3 and buf.peak == 8


def test_buffer_discard_drops_only_revoked_partitions() -> None:
    buf = BoundedBuffer(100)
    buf.put(items("a", 0, range(3)) + items("a", 1, range(3)))
    assert buf.discard({("a", 1)}) == 3
    assert [i.partition for i in buf.take(10, timeout=0)] == [0, 0, 0]


def test_take_waits_for_items() -> None:
    buf = BoundedBuffer(5)
    threading.Timer(0.05, lambda: buf.put(items("e", 0, range(1)))).start()
    assert len(buf.take(5, timeout=2)) == 1


def test_tracker_commits_one_past_the_last_acknowledged_record() -> None:
    tracker = OffsetTracker()
    tracker.acknowledge(items("e", 0, range(5)) + items("a", 2, range(7, 9)))
    assert tracker.to_commit({("e", 0), ("a", 2)}) == {("e", 0): 5, ("a", 2): 9}
    assert tracker.to_commit({("e", 0), ("a", 2)}) == {}  # nothing new
    tracker.acknowledge(items("e", 0, range(5, 6)))
    assert tracker.to_commit({("a", 2)}) == {}  # not owned: held back
    assert tracker.to_commit({("e", 0)}) == {("e", 0): 6}
    tracker.retry({("e", 0): 6})
    assert tracker.to_commit({("e", 0)}) == {("e", 0): 6}


def test_buffer_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BoundedBuffer(0)


@pytest.mark.parametrize(("output", "kind"), [
    ("-", StdoutSink), ("out.ndjson", FileSink), ("syslog+tcp://127.0.0.1:6514", SyslogTcpSink),
    ("https://siem.example/ingest", HttpSink), ("http://127.0.0.1:8080/x", HttpSink),
])
def test_open_sink(output: str, kind: type) -> None:
    assert isinstance(open_sink(output, media_type="text/plain"), kind)


@pytest.mark.parametrize("output", ["syslog+tcp://host", "syslog+udp://host:514", "ftp://x/y", "syslog+tcp://:514"])
def test_open_sink_rejects_unsupported_outputs(output: str) -> None:
    with pytest.raises(ValueError):
        open_sink(output, media_type="text/plain")
