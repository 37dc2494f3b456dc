"""The DEV-ONLY TSA over HTTP, checked with openssl as the independent client/verifier."""
from __future__ import annotations

import concurrent.futures
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ledgerstream.core.errors import TimestampError
from ledgerstream.core.timestamp import make_query, request_timestamp, token_gen_time, verify_timestamp
from ledgerstream.stack.devtsa import DevTSA, ensure_ca

pytestmark = pytest.mark.integration

DATA = b"ledgerstream checkpoint note\n7\nBBBB\n"


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)


def _http(url: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTSA]:
    server = DevTSA(tmp_path_factory.mktemp("devtsa")).start()
    try:
        yield server
    finally:
        server.stop()


def test_openssl_client_round_trip(tsa: DevTSA, tmp_path: Path) -> None:
    data, other = tmp_path / "f", tmp_path / "other"
    data.write_bytes(DATA)
    other.write_bytes(DATA + b"tampered")
    q = _openssl("ts", "-query", "-data", data, "-sha256", "-cert", "-out", tmp_path / "q.tsq")
    assert q.returncode == 0, q.stderr

    status, headers, reply = _http(tsa.url, (tmp_path / "q.tsq").read_bytes(), "application/timestamp-query")
    assert status == 200
    assert headers["Content-Type"] == "application/timestamp-reply"
    assert headers["X-Ledgerstream-Dev-Only"] == "true"
    (tmp_path / "r.tsr").write_bytes(reply)

    ok = _openssl("ts", "-verify", "-in", tmp_path / "r.tsr", "-data", data, "-CAfile", tsa.ca_cert)
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout, ok.stdout + ok.stderr
    bad = _openssl("ts", "-verify", "-in", tmp_path / "r.tsr", "-data", other, "-CAfile", tsa.ca_cert)
    assert bad.returncode != 0 and "Verification: FAILED" in bad.stdout

    ca_pem = tsa.ca_cert.read_bytes()
    assert "DEV-ONLY" in verify_timestamp(reply, DATA, ca_pem).tsa_subject
    with pytest.raises(TimestampError) as exc:
        verify_timestamp(reply, other.read_bytes(), ca_pem)
    assert exc.value.kind == "imprint_mismatch"


def test_request_timestamp_reply_verifies_with_both(tsa: DevTSA, tmp_path: Path) -> None:
    reply = request_timestamp(tsa.url, DATA)
    info = verify_timestamp(reply, DATA, tsa.ca_cert.read_bytes())
    assert token_gen_time(reply) == info.gen_time
    (tmp_path / "r.tsr").write_bytes(reply)
    (tmp_path / "f").write_bytes(DATA)
    ok = _openssl("ts", "-verify", "-in", tmp_path / "r.tsr", "-data", tmp_path / "f", "-CAfile", tsa.ca_cert)
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout


def test_concurrent_requests_get_distinct_serials(tsa: DevTSA) -> None:
    ca_pem = tsa.ca_cert.read_bytes()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: request_timestamp(tsa.url, b"%d" % i), range(24)))
    serials = {verify_timestamp(r, b"%d" % i, ca_pem).serial_number for i, r in enumerate(replies)}
    assert len(serials) == 24


@pytest.mark.parametrize("body", [b"", b"garbage", b"\x30\x03\x02\x01\x01", b"\x30\x80" + b"\x00" * 40])
def test_bad_body_is_400_and_server_survives(tsa: DevTSA, body: bytes) -> None:
    status, headers, text = _http(tsa.url, body, "application/timestamp-query")
    assert status == 400
    assert headers["Content-Type"].startswith("text/plain") and b"DEV-ONLY TSA" in text
    assert _http(tsa.url + "health")[0] == 200


def test_oversized_query_is_413(tsa: DevTSA) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", tsa.port, timeout=10)
    try:
        conn.putrequest("POST", "/")
        conn.putheader("Content-Type", "application/timestamp-query")
        conn.putheader("Content-Length", str(10**9))
        conn.endheaders()
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    assert _http(tsa.url + "health")[0] == 200


@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(tsa: DevTSA, content_type: str) -> None:
    status, headers, text = _http(tsa.url, make_query(DATA), content_type)
    assert status == 415 and b"application/timestamp-query" in text
    assert headers["X-Ledgerstream-Dev-Only"] == "true"


def test_get_endpoints(tsa: DevTSA) -> None:
    status, _, pem = _http(tsa.url + "ca.pem")
    assert status == 200 and pem == tsa.ca_cert.read_bytes()
    status, headers, body = _http(tsa.url + "health")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["dev_only"] is True
    assert _http(tsa.url + "nope")[0] == 404


class _Canned(BaseHTTPRequestHandler):
    """Stub TSA answering every POST with a fixed status and body."""

    status = 503
    body = b"down for maintenance"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[tuple[str, type[_Canned]]]:
    handler = type("Handler", (_Canned,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    finally:
        server.shutdown()
        server.server_close()


def test_http_error_is_tsa_unavailable(stub: tuple[str, type[_Canned]]) -> None:
    url, _ = stub
    with pytest.raises(TimestampError) as exc:
        request_timestamp(url, DATA)
    assert exc.value.kind == "tsa_unavailable" and exc.value.evidence["http_status"] == 503


def test_replayed_reply_is_refused(tsa: DevTSA, stub: tuple[str, type[_Canned]]) -> None:
    url, handler = stub
    handler.status, handler.body = 200, request_timestamp(tsa.url, DATA)
    with pytest.raises(TimestampError) as exc:
        request_timestamp(url, DATA)
    assert exc.value.kind == "tsa_bad_response" and "nonce" in str(exc.value)


def test_subprocess_entry_point(tmp_path: Path) -> None:
    tsa_dir, ready = tmp_path / "tsa", tmp_path / "run" / "ready.json"
    ca_before = ensure_ca(tsa_dir).ca_cert.read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "ledgerstream.stack.devtsa", "--dir", str(tsa_dir),
                             "--ready-file", str(ready)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "ready file never appeared"
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        assert info["pid"] == proc.pid and info["url"] == f"http://127.0.0.1:{info['port']}/"
        assert Path(info["ca_cert"]).read_bytes() == ca_before  # restart keeps the same dev CA

        reply = request_timestamp(info["url"], DATA)
        verify_timestamp(reply, DATA, ca_before)

        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err.decode()
        assert b"DEV-ONLY" in err
        assert not ready.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
