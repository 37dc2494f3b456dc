"""Render the report document as one self-contained HTML file, and that file as a PDF.

HTML: a jinja2 template with autoescaping (agent ids, action types and details come from
the ledger and are untrusted) and the charts inlined as SVG: no scripts, no external
assets, works offline. PDF: headless Chromium's print-to-PDF of that very file.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ledgerstream.core.errors import ConfigError
from ledgerstream.tools.report import charts

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--no-pdf-header-footer")


def render_html(doc: dict[str, Any], html_path: Path) -> str:
    """The report document as HTML for ``html_path`` (charts computed from the document
    itself; the bundle linked relative to the HTML's folder)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
    from markupsafe import Markup

    env = Environment(loader=PackageLoader("ledgerstream.tools.report", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pretty"] = _pretty
    act = doc["activity"]
    svgs = {
        "activity": charts.activity_chart(act["timeline"]["bucket_seconds"],
                                          [(_us(t), n) for t, n in act["timeline"]["buckets"]]),
        "agents": charts.agents_chart({r["agent_id"]: r["entries"] for r in act["agents"]}),
        "decisions": charts.decisions_chart(act["decisions"]),
        "alerts": charts.alerts_chart(doc["alerts"]["by_kind"]),
    }
    # the SVGs are matplotlib's output with comments stripped: text is drawn as paths
    bundle = doc["bundle"]["path"]
    href = None if bundle is None else quote(Path(os.path.relpath(Path(bundle).resolve(),
                                                                   html_path.resolve().parent)).as_posix())
    return env.get_template("eu_ai_act.html.j2").render(doc=doc, bundle_href=href,
                                                        charts={k: Markup(v) for k, v in svgs.items()})


def _pretty(value: Any) -> str:
    """Short values on one line, longer ones indented."""
    compact = json.dumps(value, sort_keys=True, default=str)
    return compact if len(compact) <= 80 else json.dumps(value, indent=2, sort_keys=True, default=str)


def _us(iso_time: str) -> int:
    return int(dt.datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp() * 1_000_000)


def find_chromium(explicit: str | None = None) -> str:
    """``--chromium``, else $LEDGERSTREAM_CHROMIUM, else the first Chromium/Chrome on PATH;
    ConfigError (exit 2) when there is none."""
    wanted = explicit or os.environ.get("LEDGERSTREAM_CHROMIUM")
    if wanted:
        found = shutil.which(wanted)
        if found is None:
            raise ConfigError(f"Chromium not found at {wanted!r}: --pdf needs headless Chromium")
        return found
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError("--pdf needs headless Chromium, and none was found on PATH (install the 'chromium' "
                      "package, or pass --chromium PATH)")


def print_pdf(html: Path, pdf: Path, chromium: str, timeout: float = 120.0) -> None:
    """Print ``html`` to ``pdf`` with headless Chromium (a throw-away profile, no network use)."""
    profile = tempfile.mkdtemp(prefix="ledgerstream-report-chromium-")
    target = pdf.resolve()
    target.unlink(missing_ok=True)  # a PDF left from an earlier run must not pass for this one
    try:
        argv = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={target}",
                html.resolve().as_uri()]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"Chromium could not print the PDF: {exc}") from exc
        if done.returncode != 0 or not target.exists() or target.stat().st_size == 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ConfigError(f"Chromium could not print the PDF (exit {done.returncode}): {' | '.join(tail)}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
