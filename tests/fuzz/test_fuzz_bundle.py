"""Fuzz the bundle reader: arbitrary bytes, mutants of a bundle-shaped ZIP (manifest and
members as docs/bundle-format.md lays them out) and ZIPs with fuzzed member names and contents
always give a report (never an exception) and never a verdict of ok."""
from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
import rfc8785
import fuzz_profile  # noqa: F401  (the Hypothesis profile: bounded in CI, LEDGERSTREAM_FUZZ_EXAMPLES)
from hypothesis import given
from hypothesis import strategies as st

from fuzz_mutations import mutated
from ledgerstream.tools.bundle_verify import CHECKS, verify_bundle

pytestmark = pytest.mark.unit

_MEMBERS = {"README.md": b"# bundle\n", "selection.json": b"{}", "tsa-ca.pem": b"", "checkpoint": b"o\n1\n",
            "entries/0.avro": b"\xc3\x01" + bytes(8), "entries/0.json": b"{}", "proofs/inclusion/0.json": b"{}"}


def _bundle(members: dict[str, bytes], *, stored: bool = False) -> bytes:
    manifest = {"format": "ledgerstream-bundle", "format_version": 1, "spec_version": 1,
                "members": {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in members.items()}}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", rfc8785.dumps(manifest))
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


SEEDS = [_bundle(_MEMBERS), _bundle(_MEMBERS, stored=True)]
_NAMES = st.one_of(st.sampled_from(list(_MEMBERS) + ["manifest.json", "/abs", "../up", "a/../b", "dir/", "a\\b"]),
                   st.text(max_size=20))


def _check(blob: bytes) -> None:
    report = verify_bundle(blob)
    doc = report.to_json()
    assert set(doc["checks"]) == set(CHECKS)
    assert not report.ok and report.errors


def test_the_seed_gets_past_the_zip_and_manifest_steps() -> None:
    """Guards the target: the seed is a well-formed bundle container, so mutants reach later steps."""
    report = verify_bundle(SEEDS[0])
    assert report.passed["zip"] == 1 and report.failed["manifest"] == 0 and not report.ok


@given(st.one_of(st.binary(max_size=400), mutated(SEEDS)))
def test_any_bytes_give_a_failing_report(blob: bytes) -> None:
    _check(blob)


@given(st.dictionaries(_NAMES, st.binary(max_size=64), max_size=6))
def test_fuzzed_members_give_a_failing_report(members: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            try:
                zf.writestr(name, data)
            except (ValueError, UnicodeEncodeError, IndexError):
                pass  # names zipfile itself cannot write
    _check(buf.getvalue())
