"""``ledgerstream report --framework eu-ai-act`` on the real dev stack, as an auditor runs it.

Workload: ``ledgerstream demo`` (its policy denies deletions), one action approved and one
refused through ``ledgerstream approve`` with a real ML-DSA-65 approver key, and an agent
whose id is an HTML script tag. Then one report run writes HTML, PDF, JSON and the bundle.

Oracles, none of them the report's code: ``ledgerstream verify --json`` and ``ledgerstream
agents --json`` (subprocesses), the entries topic decoded directly, ``ledgerstream
verify-bundle``, hashlib, the PDF's own structure, and headless Chromium rendering the page.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest

from ledgerstream.core.wire import codec
from ledgerstream.core.config import Topics
from ledgerstream.core.mldsa import PrivateKey, public_key_pem, save_private_key
from ledgerstream.core.topic_reader import read_partition
from ledgerstream.producers.approvals import read_requests
from ledgerstream.producers.errors import ApprovalDenied
from ledgerstream.producers.ledger import connect
from tests.support import browser

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EVIL = "<script>alert('report')</script>"
ARTICLES = ("article-12", "article-14", "article-15", "article-19-26-6", "article-73")
CHARTS = ("chart-activity", "chart-agents", "chart-decisions", "chart-alerts")


def cli(env: dict, *args: str, ok: tuple[int, ...] = (0,), cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)
    assert proc.returncode in ok, (args, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


@pytest.fixture()
def driver() -> Iterator[Any]:
    yield from browser.chromium()


def approver(tmp_path: Path) -> Path:
    """A policy whose ``payments:*`` actions need 1 of 1 approvers (auditor-report); returns its path."""
    key = PrivateKey.generate()
    save_private_key(key, tmp_path / "auditor-report.pem")
    (tmp_path / "auditor-report.pem.pub").write_bytes(public_key_pem(key.public_key()))
    policy = {"rules": [{"match": "payments:*", "decision": "require_approval", "reason": "money moves"}],
              "approvals": {"m": 1, "timeout": 60, "approvers": {"auditor-report": "auditor-report.pem.pub"}}}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    return path


def decide(env: dict, stack: dict, tmp_path: Path, policy: Path, amount: int, reject: bool) -> dict:
    """One ``payments:transfer`` that waits for the approver, who answers through ``ledgerstream approve``."""
    topics = Topics(**stack["topics"])
    led = connect("report-payments", stack["kafka"]["bootstrap"], topics=topics, spool_dir=tmp_path / "spool",
                  policy=str(policy))
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["event_id"] = led.emit("payments:transfer", {"amount": amount})
        except ApprovalDenied as exc:
            outcome["denied"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    request = None
    while request is None and time.monotonic() < deadline:
        pending = [r for r in read_requests(stack["kafka"]["bootstrap"], topics.approvals).values()
                   if r["agent_id"] == "report-payments" and not r["responses"]
                   and json.loads(r["payload"]) == {"amount": amount}]
        request = pending[0] if pending else None
        time.sleep(0.3)
    assert request is not None, "the approval request did not appear"
    cli(env, "approve", request["request_id"], "--key", str(tmp_path / "auditor-report.pem"), "--json",
        *(["--reject"] if reject else []))
    worker.join(60)
    assert led.flush(30) == 0
    led.close()
    return outcome


def settled(env: dict, want_at_least: int, *options: str) -> dict:
    """``verify --json`` once every entry is in a checkpoint and every checkpoint is timestamped."""
    deadline = time.monotonic() + 120
    while True:
        doc = json.loads(cli(env, "verify", "--json", *options).stdout)
        cp = doc["last_checkpoint"]
        if (doc["entries"] >= want_at_least and cp and cp["tree_size"] == doc["entries"]
                and doc["timestamps"] >= doc["checkpoints"]):
            return doc
        assert time.monotonic() < deadline, f"the ledger did not settle: {doc}"
        time.sleep(2)


def pdf_pages(data: bytes) -> int:
    """Page objects in the PDF (Chromium writes uncompressed page dictionaries)."""
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))


@pytest.fixture(scope="module")
def report_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A dev stack of this module's own: the report verifies approvals against this module's
    approvers, and other tests record approvals by other approvers on the shared stack."""
    from conftest import _run_dev_stack

    yield from _run_dev_stack(tmp_path_factory.mktemp("reporthome"))


@pytest.fixture(scope="module")
def workload(report_stack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """demo + one approved and one refused payment + a script-tag agent, settled and verified."""
    env, work = report_stack["env"], tmp_path_factory.mktemp("report-workload")
    before = json.loads(cli(env, "verify", "--json").stdout)["entries"]
    policy = approver(work)
    cli(env, "demo", "--agents", "3", "--events", "60")
    from conftest import stack_home

    with stack_home(report_stack):  # the in-process producer and reads use this stack's credentials
        assert "event_id" in decide(env, report_stack, work, policy, 250, reject=False)
        assert isinstance(decide(env, report_stack, work, policy, 9999, reject=True).get("denied"), ApprovalDenied)
    cli(env, "emit", "tool:probe", "--agent", EVIL, "--payload", '{"x": 1}')
    verified = settled(env, before + 63, "--policy", str(policy))
    assert verified["ok"], verified["errors"]
    return {"env": env, "policy": policy, "verified": verified}


def test_eu_ai_act_report_end_to_end(report_stack, workload: dict, tmp_path: Path, driver) -> None:
    env, policy, verified = workload["env"], workload["policy"], workload["verified"]
    out = tmp_path / "out"
    out.mkdir()
    started = time.monotonic()
    run = cli(env, "report", "--framework", "eu-ai-act", "--out", "r.html", "--json", "--pdf", "r.pdf",
              "--policy", str(policy), cwd=out)
    seconds = time.monotonic() - started
    doc = json.loads(run.stdout)
    assert "reading the ledger" in run.stderr  # progress goes to stderr, JSON alone on stdout

    # --- the numbers equal the oracles' ------------------------------------------------------------
    oracle = json.loads(cli(env, "verify", "--json", "--policy", str(policy)).stdout)
    assert oracle["entries"] == verified["entries"], "nothing was written while the report ran"
    for key in ("ok", "entries", "checkpoints", "timestamps", "errors", "warnings", "head", "last_checkpoint",
                "pending_links"):
        assert doc["verification"][key] == oracle[key], key
    assert (doc["ledger"]["entries"], doc["ledger"]["checkpoints"]) == (oracle["entries"], oracle["checkpoints"])
    agents = json.loads(cli(env, "agents", "--json").stdout)
    assert doc["activity"]["agents"] == agents
    assert doc["activity"]["entries"] == sum(a["entries"] for a in agents) == oracle["entries"]

    entries = [codec.decode(raw, expect="LedgerEntry")[1]
               for _, raw in read_partition(report_stack["kafka"]["bootstrap"], report_stack["topics"]["entries"])]
    decisions = Counter((e["action"]["policy"] or {}).get("decision") or "none" for e in entries)
    art = {a["article"]: a for a in doc["articles"]}
    assert art["14"]["evidence"]["decisions"] == {d: decisions.get(d, 0) for d in
                                                  ("allow", "deny", "approved", "approval_denied",
                                                   "approval_timeout", "none")}
    assert decisions["deny"] >= 1 and decisions["approved"] >= 1 and decisions["approval_denied"] >= 1
    assert art["14"]["evidence"]["approvers"]["auditor-report"] == {"approve": 1, "reject": 1}
    assert art["14"]["evidence"]["approver_configuration"]["m"] == 1
    assert art["14"]["status"] == "ok"
    assert art["19, 26(6)"]["evidence"]["retention.ms"] == -1  # the dev stack keeps entries forever
    assert art["19, 26(6)"]["evidence"]["oldest_entry"]["seq"] == 0
    cp = doc["ledger"]["covering_checkpoint"]
    assert cp["tree_size"] == oracle["last_checkpoint"]["tree_size"]
    assert cp["root_hash"] == oracle["last_checkpoint"]["root_hash"]
    assert cp["timestamps"] and cp["timestamps"][0]["gen_time"].endswith("Z")
    assert cp["witness_cosignatures"] == "none configured"
    assert doc["framework"] == "eu-ai-act" and doc["period"]["from"] is None and doc["ok"] is True

    # --- the bundle verifies offline and is the file the report names ---------------------------
    bundle = out / doc["bundle"]["file"]
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == doc["bundle"]["sha256"]
    checked = json.loads(cli(env, "verify-bundle", str(bundle), "--json").stdout)
    assert checked["ok"] and checked["entries"] == oracle["entries"]

    # --- the PDF --------------------------------------------------------------------------------------
    pdf = (out / "r.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert pdf_pages(pdf) >= 2

    # --- the HTML: escaped, self-contained, rendered by Chromium ---------------------------------
    html = (out / "r.html").read_text()
    assert EVIL not in html and "&lt;script&gt;alert(" in html
    assert doc["bundle"]["sha256"] in html and "ledgerstream verify-bundle r.bundle.zip" in html
    driver.get((out / "r.html").as_uri())
    browser.wait_for(lambda: driver.execute_script("return document.readyState") == "complete", 20, "the page")
    assert driver.execute_script("return document.scripts.length") == 0, "the agent id did not become a script"
    assert EVIL in driver.find_element("id", "agents").text
    for anchor in ARTICLES:
        section = driver.find_element("id", anchor)
        assert section.find_element("css selector", "h2").text.startswith("Article ")
    for chart in CHARTS:
        svg = driver.find_element("css selector", f"#{chart} svg")
        assert svg.size["width"] > 100 and svg.size["height"] > 50, (chart, svg.size)
        assert driver.execute_script("return arguments[0].querySelectorAll('path').length", svg) > 5
    assert driver.find_element("id", "ledger-entries").text == str(oracle["entries"])
    shot = browser.screenshot(driver, "report-eu-ai-act")
    from PIL import Image

    with Image.open(io.BytesIO(shot.read_bytes())) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20, "the screenshot is not blank"
    print(f"report run: {seconds:.1f}s for {oracle['entries']} entries")


def test_report_for_one_agent_and_a_period(workload: dict, tmp_path: Path) -> None:
    """--agent and --from/--to narrow the activity and the bundle, never the verification."""
    env = workload["env"]
    agents = {a["agent_id"]: a for a in json.loads(cli(env, "agents", "--json").stdout)}
    mine = agents["report-payments"]
    run = cli(env, "report", "--framework", "eu-ai-act", "--out", "one.html", "--json", "--agent",
              "report-payments", "--from", "1h", "--policy", str(workload["policy"]), cwd=tmp_path)
    doc = json.loads(run.stdout)
    assert [a["agent_id"] for a in doc["activity"]["agents"]] == ["report-payments"]
    assert doc["activity"]["agents"][0] == mine and mine["entries"] == 2
    assert doc["period"]["agents"] == ["report-payments"] and doc["period"]["from"] is not None
    assert doc["bundle"]["entries"] == 2 and doc["activity"]["decisions"] == {"approved": 1, "approval_denied": 1}
    assert doc["verification"]["entries"] >= sum(a["entries"] for a in agents.values())
    future = cli(env, "report", "--framework", "eu-ai-act", "--out", "empty.html", "--json", "--from",
                 "2099-01-01", cwd=tmp_path)
    empty = json.loads(future.stdout)
    assert empty["activity"]["entries"] == 0 and empty["bundle"]["path"] is None
    assert {a["article"]: a["status"] for a in empty["articles"]}["12"] == "attention"


def test_untrusted_signer_exits_1_and_the_report_says_so(report_stack, workload: dict, tmp_path: Path) -> None:
    """A home that trusts another signer key: entries are ``unknown_key`` findings. The
    report is still written, says so, and exits 1 like ``ledgerstream verify``."""
    real = Path(report_stack["env"]["LEDGERSTREAM_HOME"])
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    (home / "tsa").mkdir()
    (home / "stack.json").write_bytes((real / "stack.json").read_bytes())
    (home / "tsa" / "ca.pem").write_bytes((real / "tsa" / "ca.pem").read_bytes())
    (home / "keys" / "signer.pub.pem").write_bytes(public_key_pem(PrivateKey.generate().public_key()))
    env = {**report_stack["env"], "LEDGERSTREAM_HOME": str(home)}
    oracle = json.loads(cli(env, "verify", "--json", ok=(1,)).stdout)
    run = cli(env, "report", "--framework", "eu-ai-act", "--out", "bad.html", "--json", cwd=tmp_path, ok=(1,))
    doc = json.loads(run.stdout)
    assert doc["ok"] is False and doc["verification"]["errors"] == oracle["errors"]
    assert "unknown_key" in {f["kind"] for f in oracle["errors"]}  # entries (and checkpoints) by another key
    status = {a["article"]: a["status"] for a in doc["articles"]}
    assert status["12"] == status["15"] == "problem"
    assert doc["bundle"]["path"] is None and status["73"] != "ok"
    html = (tmp_path / "bad.html").read_text()
    assert f"VERIFICATION FOUND {len(oracle['errors'])} PROBLEM(S)" in html
    assert "verification found" in run.stderr
