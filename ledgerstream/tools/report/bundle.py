"""The report's evidence bundle: ``ledgerstream export bundle`` for the report's period.

Built from the same snapshot as the rest of the report with the replay index and the
bundle exporter (ledgerstream.tools.replay, ledgerstream.tools.bundle_export), bounded to
the newest checkpoint whose RFC 3161 tokens verify, so that the bundle always has a
timestamped checkpoint to anchor it; later entries wait for the next report.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ledgerstream.core.approvals import ApproverSet
from ledgerstream.core.errors import ConfigError, TimestampError
from ledgerstream.core.timestamp import verify_timestamp
from ledgerstream.core.verify import TrustedKeys
from ledgerstream.tools import replay as rp
from ledgerstream.tools.bundle_export import ExportError, export_bundle
from ledgerstream.tools.report.evidence import WITNESSES_NONE, Period, iso
from ledgerstream.tools.report.source import Snapshot


def index(snapshot: Snapshot, period: Period, keys: TrustedKeys) -> rp.Ledger:
    """The replay index of the snapshot, keeping the bytes of the period's entries."""
    selection = rp.Selection(agents=period.agents, since_us=period.start_us, until_us=period.end_us)
    return rp.build_ledger(snapshot.entries, snapshot.checkpoints, selection, keys)


def covering_checkpoint(ledger: rp.Ledger, ca_pem: bytes | None) -> dict[str, Any] | None:
    """The newest checkpoint that is signed, matches the entries and whose tokens all verify,
    with the tokens' genTime (None without a TSA CA or before the first anchor)."""
    if ca_pem is None:
        return None
    for cp in reversed(ledger.checkpoints):
        if not cp.signed or not cp.tokens or not ledger.matches_tree(cp):
            continue
        try:
            stamps = [(tsa, verify_timestamp(token, cp.body, ca_pem)) for tsa, token in cp.tokens]
        except TimestampError:
            continue
        rec = cp.record
        return {"tree_size": cp.tree_size, "root_hash": bytes(rec["root_hash"]).hex(),
                "chain_head": bytes(rec["chain_head"]).hex(), "created_at": iso(rec["created_at"]),
                "origin": rec["origin"], "key_id": rec["key_id"],
                "timestamps": [{"tsa": tsa, "gen_time": rp.iso_time(info.gen_time), "tsa_subject": info.tsa_subject,
                                "serial_number": str(info.serial_number)} for tsa, info in stamps],
                "witness_cosignatures": WITNESSES_NONE}
    return None


def export_period(ledger: rp.Ledger, period: Period, covering: dict[str, Any] | None, keys: TrustedKeys,
                  ca_pem: bytes | None, out: Path, approvers: ApproverSet | None = None) -> dict[str, Any]:
    """Write the period's bundle to ``out``; a dict with its path and SHA-256, or with the
    reason there is none (``refused``: entries failed verification)."""
    if ca_pem is None:
        return {"path": None, "refused": False, "reason": "no TSA CA (pass --tsa-ca): a bundle needs it"}
    if covering is None:
        return {"path": None, "refused": False, "reason": "no checkpoint with a verified RFC 3161 token yet"}
    selection = rp.Selection(agents=period.agents, since_us=period.start_us, until_us=period.end_us,
                             seq_to=covering["tree_size"] - 1)
    rows = rp.select(ledger, selection)
    if not rows:
        return {"path": None, "refused": False,
                "reason": "no entry of the period is in a timestamped checkpoint yet"}
    rp.ensure_raw(ledger, rows, lambda offsets: {o: ledger.raw[o] for o in offsets if o in ledger.raw})
    reports = list(rp.check_all(rp.EntryChecker(ledger, keys, ca_pem), rows))
    try:
        done = export_bundle(ledger, reports, keys, ca_pem, selection, out, approvers=approvers)
    except ExportError as exc:
        return {"path": None, "refused": True, "reason": str(exc), "problems": exc.problems[:20]}
    except ConfigError as exc:
        return {"path": None, "refused": False, "reason": str(exc)}
    return {"path": str(done.path), "file": done.path.name, "sha256": done.bundle_sha256,
            "manifest_sha256": done.manifest_sha256, "entries": done.entries,
            "seq_range": [rows[0].seq, rows[-1].seq], "checkpoint_size": done.checkpoint_size,
            "key_ids": done.key_ids, "selection": selection.describe(),
            "verify_command": f"ledgerstream verify-bundle {shlex.quote(done.path.name)}"}
