"""The report's charts: matplotlib figures rendered to inline SVG (no files, no fonts to fetch).

Text is drawn as paths (``svg.fonttype = path``), so the SVG looks the same in any browser
and in the PDF; XML comments (where matplotlib repeats the label text) and the prolog are
stripped, so a chart carries no ledger-derived string outside escaped SVG paths.
"""
from __future__ import annotations

import datetime as dt
import io
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ledgerstream.tools.report.evidence import DECISIONS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

LABEL_MAX = 28
_COLOURS = {"allow": "#2e7d32", "deny": "#c62828", "approved": "#1565c0", "approval_denied": "#6a1b9a",
            "approval_timeout": "#ef6c00", "none": "#9e9e9e"}
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_PROLOG = re.compile(r"^.*?(?=<svg)", re.S)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkit
    matplotlib.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "ledgerstream-report",
                                "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    _pyplot().close(fig)
    return _PROLOG.sub("", _COMMENT.sub("", buf.getvalue()), count=1).strip()


def _short(label: str) -> str:
    return label if len(label) <= LABEL_MAX else label[:LABEL_MAX - 1] + "…"


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def activity_chart(width_seconds: int, buckets: Sequence[tuple[int, int]]) -> str:
    """Entries per time bucket (received_at, UTC)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    if buckets:
        starts = [dt.datetime.fromtimestamp(t / 1e6, tz=dt.timezone.utc) for t, _ in buckets]
        ax.bar(starts, [n for _, n in buckets], width=dt.timedelta(seconds=width_seconds) * 0.9, align="edge",
               color="#1565c0")
        ax.set_ylabel(f"entries per {_duration(width_seconds)}")
        fig.autofmt_xdate()
    else:
        _empty(ax, "no entries in the period")
    ax.set_title("Activity over time (UTC)")
    return _svg(fig)


def agents_chart(per_agent: Mapping[str, int], top: int = 20) -> str:
    """Entries per agent, the busiest ``top`` agents (the rest summed as one bar)."""
    plt = _pyplot()
    rows = sorted(per_agent.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(rows) > top:
        rows = rows[:top - 1] + [(f"{len(rows) - top + 1} other agents", sum(n for _, n in rows[top - 1:]))]
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.28 * max(len(rows), 3)))
    if rows:
        ax.barh([_short(a) for a, _ in rows][::-1], [n for _, n in rows][::-1], color="#00838f")
        ax.set_xlabel("entries")
    else:
        _empty(ax, "no entries in the period")
    ax.set_title("Actions per agent")
    return _svg(fig)


def decisions_chart(decisions: Mapping[str, int]) -> str:
    """Policy decisions recorded with the actions (allow, deny, approvals...)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    counts = [decisions.get(d, 0) for d in DECISIONS]
    ax.bar(DECISIONS, counts, color=[_COLOURS[d] for d in DECISIONS])
    for x, n in enumerate(counts):
        ax.annotate(str(n), (x, n), ha="center", va="bottom", fontsize=8)
    ax.tick_params(axis="x", labelrotation=20)
    ax.set_ylabel("entries")
    ax.set_title("Policy decisions")
    return _svg(fig)


def alerts_chart(by_kind: Mapping[str, int]) -> str:
    """Verifier alerts by kind (docs/alerts.md)."""
    plt = _pyplot()
    rows = sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.28 * max(len(rows), 3)))
    if rows:
        ax.barh([k for k, _ in rows][::-1], [n for _, n in rows][::-1], color="#c62828")
        ax.set_xlabel("alerts")
    else:
        _empty(ax, "no alerts in the period")
    ax.set_title("Alerts by kind")
    return _svg(fig)


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
