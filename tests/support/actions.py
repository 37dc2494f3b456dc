"""Build valid ActionEvent records by hand, independent of the producer library."""
from __future__ import annotations

import os
import time
import uuid
from typing import Any

from ledgerstream.core import records
from ledgerstream.core.wire import codec


def make_action(agent_id: str = "agent-a", action_type: str = "tool:search", payload: Any = None,
                *, event_id: str | None = None, links: list[dict] | None = None,
                session_id: str | None = None) -> dict[str, Any]:
    payload = {"q": "x"} if payload is None else payload
    canonical = records.canonical_json(payload)
    salt = os.urandom(records.SALT_LEN)
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "agent_id": agent_id,
        "session_id": session_id,
        "action_type": action_type,
        "payload": canonical,
        "payload_salt": salt,
        "payload_hash": records.payload_commitment(salt, canonical),
        "occurred_at": time.time_ns() // 1000,
        "links": links or [],
        "policy": None,
        "approvals": [],
        "trace": None,
        "producer": {"library": "tests", "version": "0", "host": "localhost", "pid": os.getpid(), "adapter": None},
        "offline": False,
    }


def encode_action(**kwargs: Any) -> bytes:
    return codec.encode("ActionEvent", make_action(**kwargs))
