"""Random records of every shape the LedgerEntry / ActionEvent schemas allow (not only valid
actions: the codec does not care), for the fast-path tests against codec; and valid actions
as our producers write them (:func:`plain_action`), for the signer's fast path."""
from __future__ import annotations

import os
import random
import string
from typing import Any

import rfc8785

from ledgerstream.core import records

#: includes every character class JSON escapes, and non-BMP, non-ASCII ones
ALPHABET = "aZ09 _-:\"\\/\b\n\t\x00\x7fé€\u2028\uffff😀\U0010ffff"


#: no character JSON escapes (a control character, '"' or '\\')
PLAIN_ALPHABET = "aZ09 _-:/\x7fé€\u2028\uffff😀\U0010ffff"


def _text(rng: random.Random, alphabet: str, lo: int = 0, hi: int = 12) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def _long(rng: random.Random) -> int:
    return rng.choice([0, 1, -1, 63, 64, -64, -65, 8191, 8192, 2**31 - 1, -(2**31), 2**53 - 1,
                       2**63 - 1, -(2**63), rng.randint(-(2**40), 2**40), time_us(rng)])


def time_us(rng: random.Random) -> int:
    return rng.randint(1_600_000_000_000_000, 1_900_000_000_000_000)


def random_action(rng: random.Random, alphabet: str = ALPHABET) -> dict[str, Any]:
    """Any record the ActionEvent schema allows (not only valid actions: the codec does not care)."""
    hash_only = rng.random() < 0.3
    payload = None if hash_only else _text(rng, alphabet, 0, 300).encode()
    return {
        "event_id": _text(rng, alphabet, 1, 40), "agent_id": _text(rng, alphabet, 1, 20),
        "session_id": rng.choice([None, _text(rng, alphabet)]), "action_type": _text(rng, alphabet, 1, 20),
        "payload": payload, "payload_salt": None if hash_only else os.urandom(rng.choice([0, 32, 200])),
        "payload_hash": os.urandom(rng.choice([0, 32, 64])), "occurred_at": _long(rng),
        "links": [{"agent_id": _text(rng, alphabet), "event_id": _text(rng, alphabet),
                   "relation": rng.choice(["caused_by", _text(rng, alphabet)])}
                  for _ in range(rng.choice([0, 0, 1, 3, 70]))],
        "policy": rng.choice([None, {"decision": _text(rng, alphabet),
                                     "rule": rng.choice([None, _text(rng, alphabet)]),
                                     "reason": rng.choice([None, _text(rng, alphabet, 0, 200)])}]),
        "approvals": [{"request_id": _text(rng, alphabet), "approver_id": _text(rng, alphabet),
                       "key_id": _text(rng, alphabet),
                       "decision": rng.choice(["approve", "reject"]), "approved_at": _long(rng),
                       "signature": os.urandom(rng.choice([0, 3309]))} for _ in range(rng.choice([0, 0, 1, 2]))],
        "trace": rng.choice([None, {"trace_id": _text(rng, alphabet), "span_id": _text(rng, alphabet),
                                    "parent_span_id": rng.choice([None, _text(rng, alphabet)])}]),
        "producer": {"library": _text(rng, alphabet), "version": _text(rng, alphabet), "host": _text(rng, alphabet),
                     "pid": rng.choice([0, 1, -1, 2**31 - 1, -(2**31), rng.randint(0, 4_000_000)]),
                     "adapter": rng.choice([None, _text(rng, alphabet)])},
        "offline": rng.random() < 0.5,
    }


def random_entry(rng: random.Random, action: dict[str, Any], alphabet: str = ALPHABET) -> dict[str, Any]:
    def link() -> dict[str, Any]:
        if rng.random() < 0.5:
            return {"agent_id": _text(rng, alphabet), "event_id": _text(rng, alphabet), "status": "resolved",
                    "seq": rng.choice([0, 1, 2**40, 2**63 - 1]), "entry_hash": os.urandom(32)}
        return {"agent_id": _text(rng, alphabet), "event_id": _text(rng, alphabet), "status": "pending",
                "seq": None, "entry_hash": None}

    return {
        "spec_version": rng.choice([1, 1, 2, 0, 200]),
        "seq": rng.choice([0, 1, 63, 64, 8191, 8192, 2**31, 2**53 - 1]),
        "prev_hash": rng.choice([records.ZERO_HASH, os.urandom(32)]), "entry_hash": os.urandom(32),
        "action": action, "received_at": time_us(rng),
        "source": {"topic": rng.choice(["ledgerstream.actions", _text(rng, alphabet)]),
                   "partition": rng.choice([0, 7, 2**31 - 1]),
                   "offset": rng.choice([0, 5, 10**12])},
        "agent_seq": rng.choice([0, 1, 10**9]), "agent_prev_hash": rng.choice([records.ZERO_HASH, os.urandom(32)]),
        "resolved_links": [link() for _ in range(rng.choice([0, 0, 1, 2, 5]))],
        "key_id": rng.choice(["ab" * 32, _text(rng, alphabet)]),
        "signature": rng.choice([None, os.urandom(3309)]),  # None: checkpoint signing mode
        "timestamp_token": rng.choice([None, None, os.urandom(rng.choice([0, 1500]))]),
    }


def minimal_action() -> dict[str, Any]:
    return {"event_id": "e", "agent_id": "a", "session_id": None, "action_type": "t", "payload": None,
            "payload_salt": None, "payload_hash": bytes(32), "occurred_at": 5, "links": [], "policy": None,
            "approvals": [], "trace": None,
            "producer": {"library": "l", "version": "v", "host": "h", "pid": 1, "adapter": None}, "offline": False}


# --- valid actions, as our producers write them (the signer's fast path, tests/unit/test_signer_fast_path.py)

PRINTABLE = string.ascii_letters + string.digits + " !#$%&'()*+,-./:;<=>?@[]^_`{|}~"
ODD_TEXT = "ab Z\"\\/\n\t\x01\x1f\x7fé€\u2028\ud7ff\ue000😀"
ODD_KEYS = "abcAB_é\"\\😀\ue000"


def json_value(rng: random.Random, depth: int = 0, text: str = ODD_TEXT, keys: str = ODD_KEYS,
               floats: float = 0.05) -> Any:
    """A JSON value of nesting up to 4, with the given string and key characters."""
    kinds = ["int", "str", "bool", "null"] + (["obj", "list"] if depth < 4 else [])
    if rng.random() < floats:
        kinds.append("float")
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, -1, 7, 10**14, -(10**13), 2**53 - 1, -(2**53) + 1, rng.randint(-10**6, 10**6)])
    if kind == "float":
        return rng.choice([0.5, -1.25, 1e21, 3.0])
    if kind == "str":
        return "".join(rng.choice(text) for _ in range(rng.randint(0, 8)))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [json_value(rng, depth + 1, text, keys, floats) for _ in range(rng.randint(0, 4))]
    return {"".join(rng.choice(keys) for _ in range(rng.randint(0, 4))): json_value(rng, depth + 1, text, keys, floats)
            for _ in range(rng.randint(0, 5))}


def printable_id(rng: random.Random, odd: float = 0.1) -> str:
    """Mostly a plain printable-ASCII id; sometimes one the fast path must decline or refuse."""
    if rng.random() < odd:
        return rng.choice([" lead", "trail ", "é-agent", "q\"uote", "back\\slash", "x" * 257, "x" * 256, "",
                           "tab\tin", "a  b", "~"])
    return "".join(rng.choice(PRINTABLE) for _ in range(rng.randint(1, 30))).strip() or "a"


def plain_action(rng: random.Random) -> dict[str, Any]:
    """An action as our producers write them: valid, ids of printable ASCII, a JSON payload."""
    payload = rfc8785.dumps(json_value(rng, text="ab Z/\x7fé€\u2028", keys="abcAB_é", floats=0))
    salt = os.urandom(32)
    return {
        "event_id": printable_id(rng, 0), "agent_id": printable_id(rng, 0),
        "session_id": rng.choice([None, printable_id(rng, 0)]),
        "action_type": rng.choice(["tool:search", "llm:call", "a.b-c_d:E9"]), "payload": payload,
        "payload_salt": salt, "payload_hash": records.payload_commitment(salt, payload),
        "occurred_at": rng.randint(0, 2**53 - 1),
        "links": [{"agent_id": printable_id(rng, 0), "event_id": printable_id(rng, 0), "relation": "caused_by"}
                  for _ in range(rng.choice([0, 0, 1, 3]))],
        "policy": rng.choice([None, {"decision": "approved", "rule": rng.choice([None, "r"]), "reason": None}]),
        "approvals": [], "trace": rng.choice([None, {"trace_id": "t", "span_id": "s", "parent_span_id": None}]),
        "producer": {"library": "ledgerstream", "version": "0.2", "host": "h", "pid": rng.randint(0, 2**31 - 1),
                     "adapter": rng.choice([None, "langchain"])},
        "offline": rng.random() < 0.2,
    }
