"""The dashboard in headless Chromium, like an operator sees it.

1. The dev stack's dashboard renders, its ledger head equals the number of entries on the
   entries topic, and an entry page shows its verification and inclusion proof.
2. An alert written to the alerts topic appears on an open page without a reload
   (server-sent events), behind a token given once as ``?token=``.
3. End to end: a rogue producer writes a flipped-bit copy of an entry to the real entries
   topic of a fresh dev stack; the stack's verifiers raise the alert and the open page
   shows it within a minute.
Screenshots go to docs/screenshots/.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from confluent_kafka import Producer

from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.core.topic_reader import read_partition
from ledgerstream.core.kafka_security import kafka_config
from tests.support import browser
from tests.support.actions import make_action

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOKEN = "browser-token-" + "z" * 16


@pytest.fixture()
def driver() -> Iterator[Any]:
    yield from browser.chromium()


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer(kafka_config(bootstrap, "admin"))  # an insider on a dev stack
    for key, value in records:
        producer.produce(topic, value, key=key)
    producer.flush(30)


def workload(bootstrap: str, topics: dict[str, str], n: int) -> None:
    """A small multi-agent workload: a planner delegating to a researcher and a coder."""
    planner = make_action(agent_id="planner", action_type="agent:delegate", session_id="demo")
    produce(bootstrap, topics["actions"], [(b"planner", codec.encode("ActionEvent", planner))])
    time.sleep(1.0)  # the signer sees the caller first, so the callees' links resolve
    link = [{"agent_id": "planner", "event_id": planner["event_id"], "relation": "caused_by"}]
    batch = [make_action(agent_id=("researcher", "coder")[i % 2], action_type=("tool:web_search", "file:write")[i % 2],
                         links=link, session_id="demo") for i in range(n - 1)]
    produce(bootstrap, topics["actions"], [(a["agent_id"].encode(), codec.encode("ActionEvent", a)) for a in batch])


def entries(bootstrap: str, entries_topic: str) -> list[tuple[int, bytes]]:
    return list(read_partition(bootstrap, entries_topic))


def text_of(driver: Any, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def login_url(stack: dict) -> str:
    """The dev stack's dashboard URL with its generated token (``dev status`` prints the same)."""
    token = Path(stack["dashboard"]["token_file"]).read_text().strip()
    return f"{stack['dashboard']['url']}?token={token}"


def test_page_shows_the_ledger_head_and_entry_proofs(dev_stack: dict, driver: Any) -> None:
    bootstrap, topics = dev_stack["kafka"]["bootstrap"], dev_stack["topics"]
    url = dev_stack["dashboard"]["url"]
    assert url and dev_stack["dashboard"]["pid"], "the dev stack did not start the dashboard"
    before = len(entries(bootstrap, topics["entries"]))
    workload(bootstrap, topics, 9)
    browser.wait_for(lambda: len(entries(bootstrap, topics["entries"])) >= before + 9, 60, "the workload to be signed")
    driver.get(login_url(dev_stack))  # once; then the session cookie does
    browser.wait_for(lambda: text_of(driver, "live") == "live", 20, "the event stream")
    count = len(entries(bootstrap, topics["entries"]))
    browser.wait_for(lambda: text_of(driver, "head-size") == str(count), 30,
                     f"the page's ledger head to equal the {count} entries on the topic")
    browser.wait_for(lambda: "planner" in text_of(driver, "agents") and "coder" in text_of(driver, "agents"), 10, "agents")
    browser.wait_for(lambda: driver.find_elements("css selector", "#graph line.edge"), 10, "call graph edges")
    browser.wait_for(lambda: "anchored" in text_of(driver, "checkpoints"), 30, "an anchored checkpoint")
    browser.screenshot(driver, "dashboard-overview")

    driver.get(f"{url}entry/{count - 1}")
    browser.wait_for(lambda: "checkpoint" in text_of(driver, "checks"), 10, "the checks table")
    assert text_of(driver, "verdict") == "verified", text_of(driver, "checks")
    browser.screenshot(driver, "dashboard-entry")


def test_alert_is_pushed_to_an_open_page(bootstrap: str, topics: Topics, tmp_path: Path, driver: Any) -> None:
    dash = browser.DashboardProcess(bootstrap, topics.actions[: -len("actions")], tmp_path, "--token", TOKEN)
    try:
        dash.wait_ready()
        driver.get(f"{dash.url}/?token={TOKEN}")  # once; then the session cookie does
        browser.wait_for(lambda: text_of(driver, "live") == "live", 20, "the event stream")
        assert "token" not in driver.current_url
        driver.execute_script("window.__sameDocument = true;")
        alert_id = f"pushed-{uuid.uuid4().hex[:8]}"
        produce(bootstrap, topics.alerts, [(b"k", codec.encode("Alert", {
            "alert_id": alert_id, "kind": "signature_invalid", "severity": "critical", "seq_from": 4, "seq_to": 4,
            "agent_id": "coder", "detail": "ML-DSA-65 signature of entry 4 does not verify", "evidence": {},
            "verifier_id": "v-test", "time": time.time_ns() // 1000}))])
        row = browser.wait_for(lambda: driver.find_elements("css selector", "#alerts tr.alert[data-kind=signature_invalid]"),
                               30, "the alert row")
        assert "does not verify" in row[0].text
        # nobody signed it: the row says so, and the card counts it apart from genuine alerts
        assert row[0].get_attribute("data-authenticity") == "unsigned" and "forged" in row[0].get_attribute("class")
        assert row[0].find_element("css selector", ".badge.forged").text == "UNSIGNED"
        browser.wait_for(lambda: text_of(driver, "alert-forged-count") == "1 FORGED", 10, "the forged count on the card")
        assert text_of(driver, "alert-kinds") == "none"
        assert driver.execute_script("return window.__sameDocument === true"), "the page was reloaded"
        assert text_of(driver, "alert-total") == "1"
    finally:
        dash.stop()


def test_tampering_raises_a_verifier_alert_on_the_page(own_stack: dict, driver: Any) -> None:
    bootstrap, topics = own_stack["kafka"]["bootstrap"], own_stack["topics"]
    workload(bootstrap, topics, 6)
    browser.wait_for(lambda: len(entries(bootstrap, topics["entries"])) >= 6, 60, "the workload to be signed")
    driver.get(login_url(own_stack))
    browser.wait_for(lambda: text_of(driver, "live") == "live", 20, "the event stream")
    browser.wait_for(lambda: text_of(driver, "head-size") == "6", 30, "the ledger head")
    assert not driver.find_elements("css selector", "#alerts tr.alert")

    # the rogue producer: entry 2 again, one bit of its signature flipped, straight onto the ledger topic
    offset, raw = entries(bootstrap, topics["entries"])[2]
    _, entry = codec.decode(raw, expect="LedgerEntry")
    tampered = bytearray(raw)
    tampered[raw.index(bytes(entry["signature"])[:64]) + 100] ^= 0x04
    produce(bootstrap, topics["entries"], [(None, bytes(tampered))])

    verifiers = {v["id"] for v in own_stack["verifiers"]}

    def publishers() -> set[str]:
        rows = driver.find_elements("css selector", "#alerts tr.alert")
        return {cell.text for row in rows for cell in row.find_elements("css selector", "td")} & (verifiers | {"index"})

    # every verifier worker raises it, and so does the ledger index (its own signed alerts)
    browser.wait_for(lambda: publishers() == verifiers | {"index"}, 60, "alerts from every verifier and the index")
    time.sleep(1)
    browser.screenshot(driver, "dashboard-alert")
