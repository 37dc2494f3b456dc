"""The report's HTML and charts without Kafka, and the CLI's usage errors.

Untrusted ledger strings (agent ids, action types) must reach the HTML as text, never as
markup: checked with the standard library's HTML and XML parsers, not with our code.
"""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ledgerstream.tools.report import charts
from ledgerstream.tools.report.build import document
from ledgerstream.tools.report.evidence import AlertSummary, Evidence, Period, fold
from ledgerstream.tools.report.render import render_html
from ledgerstream.tools.report.source import Retention

pytestmark = pytest.mark.unit

EVIL = '<script>alert("x")</script><!-- -->'
S = 1_000_000


class Page(HTMLParser):
    """Collects start tags, their attributes, and the text of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def make_evidence(tmp_path: Path) -> Evidence:
    entries = [{"seq": i, "received_at": 1_796_000_000 * S + i * S, "key_id": "k1", "signature": b"s",
                "action": {"agent_id": EVIL if i % 2 else "planner", "action_type": f"tool:{EVIL}",
                           "policy": {"decision": ("allow", "deny")[i % 2], "rule": None, "reason": None},
                           "approvals": []}} for i in range(6)]
    verification = {"ok": True, "entries": 6, "checkpoints": 1, "timestamps": 1, "errors": [], "warnings": [],
                    "head": {"seq": 5, "entry_hash": "ab"}, "last_checkpoint": None, "stats": {}}
    agents = [{"agent_id": EVIL, "entries": 3, "first_seq": 1, "last_seq": 5, "last_activity": "t",
               "chain_head": "cd" * 32},
              {"agent_id": "planner", "entries": 3, "first_seq": 0, "last_seq": 4, "last_activity": "t",
               "chain_head": "ef" * 32}]
    alerts = AlertSummary(total=1)
    alerts.by_kind["gap"] = 1
    return Evidence(period=Period(), generated_us=1_796_000_100 * S, verification=verification, agents=agents,
                    activity=fold(entries, Period()), alerts=alerts, retention=Retention("t", -1, -1, "delete"),
                    oldest=(0, 1_796_000_000 * S), covering=None, keys={"algorithm": "ML-DSA-65", "trusted": []},
                    tsa={"ca_sha256": None}, approvers=None,
                    bundle={"path": str(tmp_path / "r.bundle.zip"), "file": "r.bundle.zip", "sha256": "00" * 32,
                            "manifest_sha256": "11" * 32, "entries": 6, "seq_range": [0, 5], "checkpoint_size": 6,
                            "verify_command": "ledgerstream verify-bundle r.bundle.zip"},
                    quiet_threshold_us=3600 * S)


def test_untrusted_strings_are_text_not_markup(tmp_path: Path) -> None:
    html = render_html(document(make_evidence(tmp_path)), tmp_path / "r.html")
    page = Page()
    page.feed(html)
    assert [t for t, _ in page.tags if t == "script"] == [], "no script element may exist"
    assert EVIL in "".join(page.text), "the agent id shows as text"
    assert "&lt;script&gt;" in html


def test_self_contained_with_four_svg_charts(tmp_path: Path) -> None:
    html = render_html(document(make_evidence(tmp_path)), tmp_path / "r.html")
    page = Page()
    page.feed(html)
    loads = [(t, a) for t, a in page.tags if t in ("link", "img", "iframe", "object", "embed") or "src" in a]
    assert loads == [], "nothing may be fetched: the page works offline"
    figures = [a["id"] for t, a in page.tags if t == "figure"]
    assert figures == ["chart-activity", "chart-agents", "chart-decisions", "chart-alerts"]
    assert sum(1 for t, _ in page.tags if t == "svg") == 4
    anchors = {a.get("id") for t, a in page.tags if t == "section"}
    assert anchors == {"article-12", "article-14", "article-15", "article-19-26-6", "article-73"}
    assert ("a", {"id": "bundle-link", "href": "r.bundle.zip"}) in page.tags


def test_bundle_link_is_relative_to_the_html(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    html = render_html(document(make_evidence(tmp_path)), tmp_path / "site" / "r.html")
    assert 'href="../r.bundle.zip"' in html


def test_chart_svg_is_well_formed_and_carries_no_label_text() -> None:
    svg = charts.agents_chart({EVIL: 3, "planner": 2})
    root = ET.fromstring(svg)  # well-formed XML, no prolog needed
    assert root.tag.endswith("svg")
    assert "<!--" not in svg and "script" not in svg, "labels are drawn as paths, comments stripped"


@pytest.mark.parametrize("args,message", [
    (["--framework", "iso-42001", "--out", "r.html"], "iso-42001"),
    (["--framework", "eu-ai-act", "--out", "r.html", "--from", "yesterday"], "--from"),
    (["--framework", "eu-ai-act", "--out", "r.html", "--from", "2026-02-01", "--to", "2026-01-01"], "empty"),
    (["--framework", "eu-ai-act", "--out", "r.html", "--quiet-gap", "0h"], "--quiet-gap"),
    (["--framework", "eu-ai-act", "--out", "r.html", "--pdf", "r.pdf", "--chromium", "/nonexistent/chromium"],
     "Chromium"),
    (["--framework", "eu-ai-act", "--out", "r.html"], "no Kafka bootstrap"),
])
def test_usage_and_environment_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LEDGERSTREAM_BOOTSTRAP"}
    env["LEDGERSTREAM_HOME"] = str(tmp_path / "no-stack")
    done = subprocess.run([sys.executable, "-m", "ledgerstream.cli.main", "report", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r.html").exists()
