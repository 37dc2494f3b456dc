"""The dashboard's JSON API, token and event stream against a real broker, signer and dev TSA."""
from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from confluent_kafka import Producer

from ledgerstream.core import merkle, mldsa, records
from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.core.topic_reader import read_partition
from tests.support.actions import make_action
from tests.support.browser import DashboardProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "test-token-" + "x" * 16


def get(url: str, token: str | None = TOKEN, accept: str = "application/json") -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept": accept, **({"Authorization": f"Bearer {token}"} if token else {})})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=15) as response:
            body = response.read()
            status, headers = response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        body, status, headers = exc.read(), exc.code, dict(exc.headers)
    try:
        return status, json.loads(body), headers
    except ValueError:
        return status, body.decode(errors="replace"), headers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in records:
        producer.produce(topic, value, key=key)
    producer.flush(30)


def entries_on_topic(bootstrap: str, topics: Topics) -> list[tuple[int, bytes]]:
    return list(read_partition(bootstrap, topics.entries))


@pytest.fixture()
def dashboard(bootstrap: str, topics: Topics, start_signer, signer_key_path: Path, dev_tsa,
              tmp_path: Path) -> Iterator[tuple[DashboardProcess, Topics]]:
    signer = start_signer("--no-leader-election", tsa_url=dev_tsa.url)
    signer.wait_role("leader")
    caller = make_action(agent_id="planner", action_type="agent:delegate")
    produce(bootstrap, topics.actions, [(b"planner", codec.encode("ActionEvent", caller))])
    wait_for(lambda: len(entries_on_topic(bootstrap, topics)) == 1, 60, "the caller's entry")
    batch = [make_action(agent_id="coder", action_type="tool:search",
                         links=[{"agent_id": "planner", "event_id": caller["event_id"], "relation": "caused_by"}])
             for _ in range(5)]
    batch += [make_action(agent_id="planner", action_type="data:delete:users") for _ in range(6)]
    produce(bootstrap, topics.actions, [(a["agent_id"].encode(), codec.encode("ActionEvent", a)) for a in batch])
    wait_for(lambda: len(entries_on_topic(bootstrap, topics)) == 12, 60, "12 signed entries")
    pub = tmp_path / "signer.pub.pem"
    pub.write_bytes(mldsa.public_key_pem(mldsa.load_private_key(signer_key_path).public_key()))
    dash = DashboardProcess(bootstrap, topics.actions[: -len("actions")], tmp_path, "--token", TOKEN,
                            "--public-key", str(pub), "--tsa-ca", str(dev_tsa.files.ca_cert))
    try:
        dash.wait_ready()
        yield dash, topics
    finally:
        dash.stop()


def test_api_reports_head_agents_graph_and_verified_entries(dashboard, bootstrap: str) -> None:
    dash, topics = dashboard
    head = wait_for(lambda: (h := get(f"{dash.url}/api/head")[1])["size"] == 12 and h, 30, "head 12")
    assert head["records_on_topic"] == len(entries_on_topic(bootstrap, topics)) and head["foreign_records"] == 0
    cps = wait_for(lambda: [c for c in get(f"{dash.url}/api/checkpoints")[1] if c["tree_size"] == 12
                            and c["anchors"]], 30, "an anchored checkpoint over all 12 entries")
    assert cps[0]["signature"] == "valid" and cps[0]["root"] == "match"
    agents = {a["agent_id"]: a for a in get(f"{dash.url}/api/agents")[1]}
    assert agents["planner"]["count"] == 7 and agents["coder"]["count"] == 5
    assert all(a["chain_breaks"] == 0 for a in agents.values())
    graph = get(f"{dash.url}/api/graph")[1]
    assert {"caller": "planner", "callee": "coder", "calls": 5} in graph["edges"]

    status, report, _ = get(f"{dash.url}/api/entry/7")
    assert status == 200 and report["verified"] and report["state"] == "timestamped"
    assert {c["name"]: c["status"] for c in report["checks"]} == {
        "entry hash": "ok", "signature": "ok", "chain": "ok", "agent chain": "ok", "inclusion": "ok",
        "timestamp": "ok"}
    proof = report["proof"]  # re-check the proof here, independently of the server
    merkle.verify_inclusion(bytes.fromhex(proof["leaf_hash"]), 7, proof["tree_size"],
                            [bytes.fromhex(h) for h in proof["hashes"]], bytes.fromhex(cps[0]["root_hash"]))
    assert "withheld" in report["entry"]["action"]["payload"]  # payloads never leave through the page
    status, html, _ = get(f"{dash.url}/entry/7", accept="text/html")
    assert status == 200 and "Inclusion proof (RFC 9162)" in html and "verified" in html
    assert get(f"{dash.url}/api/entry/99")[0] == 404
    assert get(f"{dash.url}/entry/abc", accept="text/html")[0] == 404

    # with a ledger index in HOME, every ledger answer comes from it (O(log n) or O(k)): the
    # same answers as the live view, which read the topics itself (the oracle here)
    assert report["source"] == "live"
    live = {path: get(f"{dash.url}{path}")[1] for path in ("/api/head", "/api/agents", "/api/checkpoints", "/api/graph")}
    assert live["/api/head"]["source"] == "live"
    index = subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", "index", "run", "--once", "--no-alerts",
                            "--home", str(dash.home), "--bootstrap", bootstrap, "--topic-prefix", dash.prefix,
                            "--trusted-key", str(dash.home / "signer.pub.pem"), "--tsa-ca", str(dash.tsa_ca)],
                           capture_output=True, text=True, timeout=120)
    assert index.returncode == 0, index.stderr[-2000:]
    status, indexed, _ = get(f"{dash.url}/api/entry/7")
    assert status == 200 and indexed["source"] == "index"
    assert {k: indexed[k] for k in ("seq", "offset", "state", "verified", "checks", "entry")} == {
        k: report[k] for k in ("seq", "offset", "state", "verified", "checks", "entry")}
    proof = indexed["proof"]
    merkle.verify_inclusion(bytes.fromhex(proof["leaf_hash"]), 7, proof["tree_size"],
                            [bytes.fromhex(h) for h in proof["hashes"]], bytes.fromhex(proof["root_hash"]))
    assert proof["root_hash"] == cps[0]["root_hash"]
    assert get(f"{dash.url}/api/entry/99")[0] == 404  # not indexed: the live view answers

    head = get(f"{dash.url}/api/head")[1]
    assert head["source"] == "index"
    # `index run --once` read every committed record, then stopped: the page must not call it current
    assert {k: head["index"][k] for k in ("follower", "caught_up", "records_behind")} == {
        "follower": "stopped", "caught_up": False, "records_behind": 0}
    same = ("size", "seq", "entry_hash", "root", "root_size", "last_received_at", "records_on_topic", "foreign_records")
    assert {k: head[k] for k in same} == {k: live["/api/head"][k] for k in same}
    by_agent = lambda rows: {a["agent_id"]: a for a in rows}  # noqa: E731
    assert by_agent(get(f"{dash.url}/api/agents")[1]) == by_agent(live["/api/agents"])
    indexed_cp = next(c for c in get(f"{dash.url}/api/checkpoints")[1] if c["offset"] == cps[0]["offset"])
    assert {k: indexed_cp[k] for k in ("tree_size", "root_hash", "chain_head", "signature", "root", "key_id")} == {
        k: cps[0][k] for k in ("tree_size", "root_hash", "chain_head", "signature", "root", "key_id")}
    assert [(a["tsa"], a["offset"]) for a in indexed_cp["anchors"]] == [(a["tsa"], a["offset"]) for a in cps[0]["anchors"]]
    graph = get(f"{dash.url}/api/graph")[1]
    assert graph["edges"] == live["/api/graph"]["edges"] and graph["nodes"] == live["/api/graph"]["nodes"]
    assert sorted(map(str, graph["recent"])) == sorted(map(str, live["/api/graph"]["recent"]))
    overview = get(f"{dash.url}/api/overview")[1]
    assert overview["head"]["source"] == "index" and overview["follower"]["ledger"].startswith("off")

    # the index goes away: the live view follows the topics again and answers the whole ledger
    shutil.rmtree(dash.home / "index")
    assert get(f"{dash.url}/api/head")[1]["source"] == "live"
    wait_for(lambda: get(f"{dash.url}/api/overview")[1]["follower"]["ledger"] == "live", 30, "the live follow")
    again = get(f"{dash.url}/api/head")[1]
    assert {k: again[k] for k in same} == {k: live["/api/head"][k] for k in same}


def test_token_guards_every_route(dashboard) -> None:
    dash, _ = dashboard
    for path in ("/", "/api/head", "/api/overview", "/api/alerts", "/api/entry/0", "/entry/0", "/static/app.js",
                 "/api/events"):
        status, _, headers = get(f"{dash.url}{path}", token=None)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Bearer")
    # liveness for container health checks answers without the token, and says nothing of the ledger
    status, body, _ = get(f"{dash.url}/healthz", token=None)
    assert status == 200 and set(body) == {"ok", "follower"}
    assert get(f"{dash.url}/api/head", token="wrong-token-" + "y" * 16)[0] == 401
    assert get(f"{dash.url}/api/head?token=nope", token=None)[0] == 401
    # ?token= once: a page request is redirected without the token and gets the session cookie
    status, _, headers = get(f"{dash.url}/?token={TOKEN}", token=None, accept="text/html")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    request = urllib.request.Request(f"{dash.url}/api/head", headers={"Cookie": cookie.split(";")[0]})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    status, _, _ = get(f"{dash.url}/api/head", token=None)
    assert status == 401
    # read-only: nothing but GET
    request = urllib.request.Request(f"{dash.url}/api/head", method="POST", data=b"",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(request, timeout=10)
    assert exc.value.code == 405


def _status_with_host(dash: DashboardProcess, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=10)
    try:  # skip_host: send exactly the Host a rebound DNS name would produce
        conn.putrequest("GET", "/api/head", skip_host=True)
        conn.putheader("Host", host)
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_host_allowlist_defeats_dns_rebinding(dashboard) -> None:
    dash, _ = dashboard
    for host in (f"127.0.0.1:{dash.port}", f"localhost:{dash.port}", f"LOCALHOST:{dash.port}"):
        assert _status_with_host(dash, host) == 200, host
    for host in (f"evil.example:{dash.port}", "evil.example", f"127.0.0.1:{dash.port + 1}",
                 f"127.0.0.1.evil.example:{dash.port}", ""):
        assert _status_with_host(dash, host) == 403, host


def test_alerts_are_pushed_and_tampered_records_kept_aside(dashboard, bootstrap: str) -> None:
    dash, topics = dashboard
    conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=20)
    conn.request("GET", "/api/events", headers={"Authorization": f"Bearer {TOKEN}"})
    stream = conn.getresponse()
    assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
    alert_id = f"a-{uuid.uuid4().hex[:8]}"
    produce(bootstrap, topics.alerts, [(b"k", codec.encode("Alert", {
        "alert_id": alert_id, "kind": "entry_hash_mismatch", "severity": "critical", "seq_from": 3, "seq_to": 3,
        "agent_id": "planner", "detail": "pushed", "evidence": {}, "verifier_id": "v-test",
        "time": time.time_ns() // 1000}))])
    deadline, event, pushed = time.monotonic() + 30, None, None
    while time.monotonic() < deadline and pushed is None:
        line = stream.fp.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "alert":
            pushed = json.loads(line[6:])
    conn.close()
    assert pushed is not None and pushed["alert_id"] == alert_id and pushed["kind"] == "entry_hash_mismatch"

    # a rogue copy of entry 3 with one bit flipped in its signature: the view keeps it aside
    offset, raw = entries_on_topic(bootstrap, topics)[3]
    _, entry = codec.decode(raw, expect="LedgerEntry")
    tampered = bytearray(raw)
    tampered[raw.index(bytes(entry["signature"])[:64]) + 10] ^= 0x01
    produce(bootstrap, topics.entries, [(None, bytes(tampered))])
    # the head reaches 12 once the view has read the checkpoint over entry 11, which may come after
    # the rogue copy (the topics are read independently): wait for both, then the head never moves
    head = wait_for(lambda: (h := get(f"{dash.url}/api/head")[1])["foreign_records"] == 1 and h["size"] == 12 and h,
                    30, "the rogue copy kept aside, the head at 12")
    report = get(f"{dash.url}/api/entry/3")[1]
    assert report["verified"] and report["other_records"][0]["reason"].startswith("bad_signature:")

    # a forged entry 12 that continues the chain exactly, signed by another key (issue 17's attack):
    # the core never adopts it, so the head, the root and entry pages stay on the genuine ledger
    _, last = codec.decode(entries_on_topic(bootstrap, topics)[11][1], expect="LedgerEntry")
    attacker = mldsa.PrivateKey.generate()
    forged = dict(last, seq=12, prev_hash=bytes(last["entry_hash"]), key_id=attacker.public_key().key_id,
                  action=dict(last["action"], event_id=str(uuid.uuid4()), action_type="data:delete:everything"))
    forged["entry_hash"] = records.entry_hash(forged)
    forged["signature"] = attacker.sign(records.entry_signing_message(forged["entry_hash"]))
    produce(bootstrap, topics.entries, [(None, codec.encode("LedgerEntry", forged))])
    after = wait_for(lambda: (h := get(f"{dash.url}/api/head")[1])["foreign_records"] == 2 and h, 30, "the forgery")
    assert (after["size"], after["entry_hash"], after["root"]) == (12, head["entry_hash"], head["root"])
    assert bytes.fromhex(after["entry_hash"]) == bytes(last["entry_hash"])
    assert get(f"{dash.url}/api/entry/12")[0] == 404
