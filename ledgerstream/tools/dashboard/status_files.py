"""The status files that signers and verifiers write under the home folder.

``signer/*.json`` (one per signer instance: leader and hot standbys),
``verifiers/<id>/status.json`` and ``verifiers/<id>/graph.json``. Files are replaced
atomically by their writers; a file not updated for ``STALE_AFTER`` seconds is shown as
stale, because its writer is probably gone.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

STALE_AFTER = 15.0


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _freshness(data: dict[str, Any], path: Path, now: float) -> dict[str, Any]:
    updated = data.get("updated_at")
    if not isinstance(updated, (int, float)):
        try:
            updated = path.stat().st_mtime
        except OSError:
            updated = None
    age = None if updated is None else max(0.0, now - updated)
    return {"updated_at": updated, "age_seconds": None if age is None else round(age, 1),
            "stale": age is None or age > STALE_AFTER}


def signers(home: Path) -> list[dict[str, Any]]:
    now, out = time.time(), []
    for path in sorted((home / "signer").glob("*.json")):
        data = _read(path)
        if isinstance(data, dict):
            out.append({**data, "file": path.name, **_freshness(data, path, now)})
    return out


def verifiers(home: Path) -> list[dict[str, Any]]:
    now, out = time.time(), []
    root = home / "verifiers"
    for folder in sorted(p for p in root.glob("*") if p.is_dir()):
        path = folder / "status.json"
        data = _read(path)
        if isinstance(data, dict):
            view = {"id": data.get("id") or folder.name, "position": data.get("position"), "lag": data.get("lag"),
                    "healthy": data.get("healthy"), "last_checkpoint": data.get("last_checkpoint"),
                    "alerts": data.get("alerts") or {}, "metrics_url": data.get("metrics_url")}
            fresh = _freshness(data, path, now)
            view.update(fresh)
            view["health"] = ("stale" if fresh["stale"] else "healthy" if data.get("healthy") else "unhealthy")
            out.append(view)
    return out


def graph_edges(home: Path) -> list[dict[str, Any]]:
    """Cross-agent call edges the verifiers found ({from_seq, from_agent, to_seq, to_agent})."""
    edges: list[dict[str, Any]] = []
    for path in sorted((home / "verifiers").glob("*/graph.json")):
        data = _read(path)
        items = data.get("edges") if isinstance(data, dict) else data
        if isinstance(items, list):
            edges += [e for e in items if isinstance(e, dict)]
    return edges
