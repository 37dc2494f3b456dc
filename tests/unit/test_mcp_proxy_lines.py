"""The proxy's message splitter holds a bounded amount of an unfinished message."""
from __future__ import annotations

import json

from hypothesis import given, strategies as st

from ledgerstream.mcp.proxy import LineSplitter


def feed_all(splitter: LineSplitter, data: bytes, cuts: list[int]) -> list[bytes]:
    out, start = [], 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        out += splitter.feed(data[start:cut])
        start = cut
    return out


@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=8),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=6))
def test_messages_come_out_whole_however_the_stream_is_cut(messages, cuts) -> None:
    data = b"".join(m + b"\n" for m in messages)
    splitter = LineSplitter(1000, pass_oversized=False, side="client")
    assert feed_all(splitter, data, cuts) == [m + b"\n" for m in messages]
    assert splitter.rest() == b""


def test_an_oversized_client_message_is_dropped_and_the_next_one_passes() -> None:
    call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "rm", "arguments": {"pad": "x" * 5000}}}).encode() + b"\n"
    ok = b'{"jsonrpc":"2.0","id":2,"method":"ping"}\n'
    splitter = LineSplitter(1024, pass_oversized=False, side="client")
    out = []
    for i in range(0, len(call + ok), 700):
        out += splitter.feed((call + ok)[i:i + 700])
        assert len(splitter._buffer) <= 1024 + 700  # bounded while the big one streams in
    assert out == [ok]  # the ungoverned tools/call never comes out


def test_an_oversized_server_message_is_passed_on_byte_for_byte() -> None:
    big = b'{"jsonrpc":"2.0","id":1,"result":"' + b"y" * 5000 + b'"}\n'
    after = b'{"jsonrpc":"2.0","id":2,"result":{}}\n'
    splitter = LineSplitter(1024, pass_oversized=True, side="server")
    out = []
    for i in range(0, len(big + after), 333):
        out += splitter.feed((big + after)[i:i + 333])
    assert b"".join(out) == big + after
    assert out[-1] == after  # the next message is whole again, so it is parsed and recorded
