"""docs/reference-verifier.py without Kafka: its hand-written JCS against the `rfc8785` package, its
Merkle proof checks against the RFC 9162 vectors, its entry view against the record vectors, and
the limits it promises (standard library + cryptography only, at most 180 lines of code).

The script runs against real bundles in tests/integration/test_reference_verifier.py.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import math
import random
import struct
import sys
from pathlib import Path

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "reference-verifier.py"
VECTORS = ROOT / "tests" / "vectors"
MAX_CODE_LINES = 180


def _load_script():
    spec = importlib.util.spec_from_file_location("reference_verifier", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rv = _load_script()


def code_lines(source: str) -> list[str]:
    """The lines that are neither blank nor part of a docstring (module, class or function)."""
    tree = ast.parse(source)
    docstring_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and ast.get_docstring(node, clean=False) is not None:
            doc = node.body[0]
            docstring_lines.update(range(doc.lineno, doc.end_lineno + 1))
    return [line for number, line in enumerate(source.splitlines(), 1)
            if line.strip() and number not in docstring_lines]


# --- the promises of the script --------------------------------------------------------------------

def test_line_count_guard() -> None:
    lines = code_lines(SCRIPT.read_text())
    assert len(lines) <= MAX_CODE_LINES, f"{len(lines)} code lines (limit {MAX_CODE_LINES}): simplify the script"


def test_code_line_counter_skips_docstrings_and_blanks() -> None:
    source = '"""doc\n\nmore"""\nimport os\n\n\ndef f():\n    """one"""\n    return 1  # comment\n'
    assert code_lines(source) == ["import os", "def f():", "    return 1  # comment"]


def test_imports_only_the_standard_library_and_cryptography() -> None:
    modules = set()
    for node in ast.walk(ast.parse(SCRIPT.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            modules.add(node.module.split(".")[0])
    outside = {m for m in modules if m not in sys.stdlib_module_names} - {"cryptography"}
    assert outside == set() and "cryptography" in modules


# --- JCS (RFC 8785) by hand -------------------------------------------------------------------------

def jcs(value) -> bytes:
    return rv.jcs(value).encode()


@pytest.mark.parametrize("ieee_hex,want", [  # RFC 8785 appendix B
    ("0000000000000000", "0"), ("8000000000000000", "0"), ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"), ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"), ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"), ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"), ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"), ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
])
def test_rfc8785_appendix_b_numbers(ieee_hex: str, want: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(ieee_hex))[0]
    assert rv.es6(value) == want == rfc8785.dumps(value).decode()


def test_rfc8785_examples() -> None:
    text = ('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
            '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
            '"literals": [null, true, false]}')
    want = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
            '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert jcs(json.loads(text)) == want.encode()
    text = ('{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
            '"1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
            '"\\u00f6": "Latin Small Letter O With Diaeresis"}')
    assert list(json.loads(jcs(json.loads(text))).values()) == [
        "Carriage Return", "One", "Control", "Latin Small Letter O With Diaeresis", "Euro Sign",
        "Emoji: Grinning Face", "Hebrew Letter Dalet With Dagesh"]


SAFE_INT = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
#: keys and strings from the whole of Unicode (no lone surrogates, which are not JSON text), with an
#: extra share of the characters where UTF-16 and code point order differ, and of escapes
TEXT = st.text(st.one_of(st.characters(blacklist_categories=("Cs",)),
                         st.sampled_from("\x00\x1f\x7f\"\\/\b\f\n\r\t\u2028\u2029\ue000\uffff\U0001F600\U00010000")))
JSON = st.recursive(st.none() | st.booleans() | SAFE_INT | FLOATS | TEXT,
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
                    max_leaves=30)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_jcs_equals_rfc8785(value) -> None:
    assert jcs(value) == rfc8785.dumps(value)
    assert jcs(json.loads(rfc8785.dumps(value))) == rfc8785.dumps(value)  # as json.loads returns it


@settings(max_examples=1000, deadline=None)
@given(st.one_of(FLOATS, st.integers(0, 2**64 - 1).map(lambda b: struct.unpack("<d", b.to_bytes(8, "little"))[0])))
def test_es6_number_formatting_equals_rfc8785(value: float) -> None:
    if math.isfinite(value):
        assert rv.es6(value) == rfc8785.dumps(value).decode()


def test_es6_on_many_random_doubles() -> None:
    rng = random.Random(8785)
    values = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(30000)]
    values += [rng.random() * 10.0 ** rng.randint(-30, 30) for _ in range(30000)]
    values += [float(rng.randint(-10**6, 10**6)) / 10 ** rng.randint(0, 8) for _ in range(10000)]
    for value in filter(math.isfinite, values):
        assert rv.es6(value) == rfc8785.dumps(value).decode(), value


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(TEXT, st.none(), min_size=2, max_size=8))
def test_keys_sorted_by_utf16_code_units(value: dict) -> None:
    keys = list(json.loads(jcs(value)))
    assert keys == sorted(value, key=lambda k: k.encode("utf-16-be")) == list(json.loads(rfc8785.dumps(value)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "\ud800", {"\udfff": 1}, {1, 2}, b"x"])
def test_what_jcs_refuses_rfc8785_refuses(bad) -> None:
    with pytest.raises(Exception):
        jcs({"x": [bad]})
    with pytest.raises(Exception):
        rfc8785.dumps({"x": [bad]})


def test_integers_beyond_2_53_are_the_doubles_they_denote() -> None:
    """JCS numbers are IEEE doubles, so the text of a float >= 2^53 (which JCS writes without an exponent up to
    1e21, and json.loads reads back as an int) stays canonical, and an integer no double holds does not."""
    for value in (2.0**53, 1e20, 123456789012345680000.0, -1e20):
        text = rfc8785.dumps(value)
        assert isinstance(json.loads(text), int) and jcs(json.loads(text)) == text
    assert jcs(2**53 + 1) == b"9007199254740992" != str(2**53 + 1).encode()  # so "9007199254740993" is not JCS
    with pytest.raises(rfc8785.IntegerDomainError):  # where the package refuses instead
        rfc8785.dumps(2**53 + 1)


# --- the other pieces, on the checked-in vectors -------------------------------------------------------

def test_merkle_proofs_against_the_rfc9162_vectors() -> None:
    """Same verdict as tests/vectors/merkle for every case a bundle can carry (0 <= index, 0 < size1 < size2)."""
    tree = json.loads((VECTORS / "merkle" / "tree.json").read_text())
    data_of = {leaf_hash: bytes.fromhex(data) for data, leaf_hash in zip(tree["leaves"], tree["leaf_hashes"])}
    checked = 0
    for case in json.loads((VECTORS / "merkle" / "inclusion.json").read_text())["cases"]:
        index, size, leaf_hash = case["index"], case["size"], case["leaf_hash"]
        if not (isinstance(index, int) and isinstance(size, int) and index >= 0 and leaf_hash in data_of):
            continue  # a bundle's leaf index is its file name's seq, and its leaf is SHA-256(0x00 || entry hash)
        proof = {"leaf_index": index, "tree_size": size, "root": case["root"], "entry_hash": data_of[leaf_hash].hex(),
                 "leaf_hash": leaf_hash, "path": case["proof"]}
        assert rv.included(proof, index, data_of[leaf_hash], size, case["root"]) is not case["want_err"], case["desc"]
        checked += 1
    assert checked > 800
    checked = 0
    for case in json.loads((VECTORS / "merkle" / "consistency.json").read_text())["cases"]:
        if not 0 < case["size1"] < case["size2"]:
            continue
        proof = {k: case[k] for k in ("size1", "root1", "size2", "root2")} | {"path": case["proof"]}
        old = {"tree_size": case["size1"], "root_hash": case["root1"]}
        new = {"tree_size": case["size2"], "root_hash": case["root2"]}
        assert rv.consistent(proof, old, new) is not case["want_err"], case["desc"]
        checked += 1
    assert checked > 300


def test_entry_view_and_hash_against_the_record_vectors() -> None:
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PublicKey

    vectors = json.loads((VECTORS / "records" / "ledger_v1.json").read_text())
    key = MLDSA65PublicKey.from_public_bytes(bytes.fromhex(vectors["signer"]["public_key"]))
    for case in vectors["entries"]:
        entry = case["entry"]  # the record with byte strings as hex: what an entries/<seq>.json holds
        assert rv.jcs(rv.entry_view(entry)) == case["entry_hash_view_jcs"]
        entry_hash = rv.sha256(rv.TAG_ENTRY, rv.jcs(rv.entry_view(entry)).encode())
        assert entry_hash.hex() == case["entry_hash"] == entry["entry_hash"]
        assert rv.signed({vectors["signer"]["key_id"]: key}, entry["key_id"], entry["signature"],
                         rv.TAG_ENTRY_SIGNATURE + entry_hash)
        assert not rv.signed({vectors["signer"]["key_id"]: key}, entry["key_id"], entry["signature"],
                             rv.TAG_ENTRY_SIGNATURE + bytes(32))
    for case in vectors["payload_commitments"]:
        commitment = rv.sha256(rv.TAG_PAYLOAD, bytes.fromhex(case["salt"]), bytes.fromhex(case["canonical"]))
        assert commitment.hex() == case["commitment"]
        assert jcs(json.loads(case["payload_json"])) == bytes.fromhex(case["canonical"])


def test_the_verdict_vectors_genuine_ledger() -> None:
    """tests/vectors/records/verdicts_v1.json's genuine entries (approvals, a float payload, a per-entry token),
    checked with the script's own pieces: entry hash, signature, payload commitment, payload JCS, entry token."""
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey

    vectors = json.loads((VECTORS / "records" / "verdicts_v1.json").read_text())
    signer = MLDSA65PrivateKey.from_seed_bytes(bytes.fromhex(vectors["signer"]["seed"])).public_key()
    keys = {rv.sha256(signer.public_bytes_raw()).hex(): signer}
    tokens = 0
    for item in vectors["ledger"]:
        e, a = item["entry"], item["entry"]["action"]
        h = rv.sha256(rv.TAG_ENTRY, jcs(rv.entry_view(e)))
        assert h.hex() == item["entry_hash"] == e["entry_hash"]
        assert rv.signed(keys, e["key_id"], e["signature"], rv.TAG_ENTRY_SIGNATURE + h)
        payload = bytes.fromhex(a["payload"])
        assert rv.sha256(rv.TAG_PAYLOAD, bytes.fromhex(a["payload_salt"]), payload).hex() == a["payload_hash"]
        assert jcs(json.loads(payload)) == payload  # the payload is canonical, floats included
        if e["timestamp_token"] is not None:
            token, ca = bytes.fromhex(e["timestamp_token"]), vectors["tsa_ca_pem"].encode()
            assert rv.token_ok(token, h, ca) and not rv.token_ok(token, bytes(32), ca)
            tokens += 1
    assert tokens == 1 and any("1e+21" in bytes.fromhex(i["entry"]["action"]["payload"]).decode()
                               for i in vectors["ledger"])
