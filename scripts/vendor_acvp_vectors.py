"""Extract the ML-DSA-65 test groups of NIST's ACVP ML-DSA vector sets into tests/vectors/acvp/.

The complete ACVP-Server files are too large to vendor (ML-DSA-sigGen-FIPS204/prompt.json
alone is 5 MB, mostly ML-DSA-44/87), so only the ML-DSA-65 groups are kept: each vendored
file is the upstream file with its ``testGroups`` list filtered, every kept group (and every
test case in it) unchanged. NIST writes these files as ``json.dumps(data, indent=2)`` would
(checked below for every source file), so a kept group's text is byte for byte the text it
has upstream; the script checks that too.

Source: usnistgov/ACVP-Server tag v1.1.0.43 (commit 975de31eb83d87039ec88934fdc47d8c312b892d),
directory gen-val/json-files. Give this script either that directory or a copy of it made
gzip-compressed, e.g. the ``acvp/`` directory of github.com/paulmillr/acvp-vectors at commit
2e9216ceafb854d7bc113088a2f8b043654226a8 (files ``<name>.json.gz``):

    git clone --depth 1 --branch v1.1.0.43 https://github.com/usnistgov/ACVP-Server
    python scripts/vendor_acvp_vectors.py ACVP-Server/gen-val/json-files

Every source file must have the SHA-256 pinned in SOURCES (the digest of the uncompressed
upstream file). ``--check`` compares the result with the files already in tests/vectors/acvp/
instead of writing them. Standard library only.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from pathlib import Path

TAG = "v1.1.0.43"
COMMIT = "975de31eb83d87039ec88934fdc47d8c312b892d"
PARAMETER_SET = "ML-DSA-65"
DEST = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "acvp"

# (vector set directory, file) -> SHA-256 of the complete upstream file at COMMIT.
SOURCES = {
    ("ML-DSA-keyGen-FIPS204", "internalProjection.json"):
        "e67ee6540d40e11506c3c4e3b1f79fc1cefcd49820db99fc61f87cc8ba463baf",
    ("ML-DSA-sigVer-FIPS204", "internalProjection.json"):
        "47cdd6314c7f746d02421ffcba89d4dbc7bb875ac49e07a029fdfc26fba55437",
    ("ML-DSA-sigVer-FIPS204", "expectedResults.json"):
        "e1d84ef1b2f35196278ab0b0ed6a46ec62cc03d2dfa92c564199e1999bfb8ea6",
    ("ML-DSA-sigGen-FIPS204", "prompt.json"):
        "447749d72817b211160d243311ce32302f3023e59c355b0f70be2bd3e9e7830d",
    ("ML-DSA-sigGen-FIPS204", "expectedResults.json"):
        "228d011bbe274aeb93e22eea1e0d57b78f43795cf6a64fb5ef1e626485a0bedb",
    ("ML-DSA-sigGen-FIPS204-tr1", "prompt.json"):
        "0a81a213fb4825f0a9d8893a20445a3fed88a6f1832703548120b9588c74a08e",
    ("ML-DSA-sigGen-FIPS204-tr1", "expectedResults.json"):
        "8d86d120d128d2f2d29afb7843b7351677ac0f1bf649295d85b7bf3dd533949c",
}


def _keep(vector_set: str, group: dict) -> bool:
    """ML-DSA-65 groups; of the FIPS204-tr1 sigGen set only the seed-key groups (its
    expanded-key groups repeat ML-DSA-sigGen-FIPS204's; ledgerstream keys are seeds)."""
    if group["parameterSet"] != PARAMETER_SET:
        return False
    return vector_set != "ML-DSA-sigGen-FIPS204-tr1" or group["keyFormat"] == "seed"


def _read(source: Path, vector_set: str, name: str) -> bytes:
    plain, packed = source / vector_set / name, source / vector_set / f"{name}.gz"
    raw = plain.read_bytes() if plain.exists() else gzip.decompress(packed.read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCES[(vector_set, name)]:
        raise SystemExit(f"{vector_set}/{name}: SHA-256 {digest} is not that of ACVP-Server {TAG}")
    return raw


def _dump(data: dict) -> str:
    return json.dumps(data, indent=2)  # NIST's layout: 2-space indent, no trailing newline


def extract(source: Path) -> dict[str, bytes]:
    """Relative output path -> vendored file content."""
    raws = {key: _read(source, *key) for key in SOURCES}
    docs = {}
    for key, raw in raws.items():
        docs[key] = json.loads(raw)
        if _dump(docs[key]).encode() != raw:  # so re-serialising a group reproduces its bytes
            raise SystemExit(f"{'/'.join(key)}: not in the layout this script reproduces")
    out: dict[str, bytes] = {}
    for (vector_set, name), doc in docs.items():
        # expectedResults groups carry only tgId: keep the tgIds kept from the prompt
        # (or, for sigVer, from internalProjection, which has the same groups).
        if name == "expectedResults.json":
            pair = "prompt.json" if (vector_set, "prompt.json") in docs else "internalProjection.json"
            kept_ids = {g["tgId"] for g in docs[(vector_set, pair)]["testGroups"] if _keep(vector_set, g)}
            groups = [g for g in doc["testGroups"] if g["tgId"] in kept_ids]
        else:
            groups = [g for g in doc["testGroups"] if _keep(vector_set, g)]
        if not groups:
            raise SystemExit(f"{vector_set}/{name}: no {PARAMETER_SET} group")
        text = _dump({**doc, "testGroups": groups})
        upstream = raws[(vector_set, name)].decode()
        for group in groups:  # each kept group is verbatim upstream text
            block = "\n".join("    " + line for line in _dump(group).splitlines())
            if block not in upstream:
                raise SystemExit(f"{vector_set}/{name}: tgId {group['tgId']} is not verbatim upstream text")
        out[f"{vector_set}/{name}"] = text.encode()
    _cross_check(docs)
    return out


def _cross_check(docs: dict) -> None:
    """internalProjection's testPassed is the answer in expectedResults.json, case by case."""
    projected = {t["tcId"]: t["testPassed"] for g in docs[("ML-DSA-sigVer-FIPS204", "internalProjection.json")]
                 ["testGroups"] for t in g["tests"]}
    expected = {t["tcId"]: t["testPassed"] for g in docs[("ML-DSA-sigVer-FIPS204", "expectedResults.json")]
                ["testGroups"] for t in g["tests"]}
    if projected != expected:
        raise SystemExit("ML-DSA-sigVer-FIPS204: internalProjection and expectedResults disagree")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="ACVP-Server gen-val/json-files (or a .json.gz copy of it)")
    parser.add_argument("--check", action="store_true", help="compare with tests/vectors/acvp/, write nothing")
    args = parser.parse_args()
    files = extract(args.source)
    stale = []
    for rel, content in sorted(files.items()):
        path = DEST / rel
        doc = json.loads(content)
        cases = sum(len(g["tests"]) for g in doc["testGroups"])
        tg_ids = ",".join(str(g["tgId"]) for g in doc["testGroups"])
        if args.check:
            same = path.exists() and path.read_bytes() == content
            stale += [] if same else [rel]
            state = "unchanged" if same else "DIFFERS"
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            state = "written"
        print(f"{rel}: tgId {tg_ids}, {cases} cases, sha256 {hashlib.sha256(content).hexdigest()} ({state})")
    if stale:
        print(f"differs from ACVP-Server {TAG}: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
