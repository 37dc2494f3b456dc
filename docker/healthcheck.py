"""Container health checks without extra tools in the image.

``status FILE MAX_AGE``  healthy while FILE (a signer/verifier status JSON) was updated
                         within MAX_AGE seconds (its ``updated_at``, else the file's mtime);
``http URL``             healthy when URL answers below 500 (a 401 still means "serving"),
                         with ``Authorization: Bearer $LEDGERSTREAM_DASHBOARD_TOKEN`` if set.
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request


def status(path: str, max_age: float) -> bool:
    try:
        with open(path) as f:
            updated = json.load(f).get("updated_at")
    except (OSError, ValueError):
        return False
    if not isinstance(updated, (int, float)):
        updated = os.stat(path).st_mtime
    return time.time() - updated <= max_age


def http(url: str) -> bool:
    token = os.environ.get("LEDGERSTREAM_DASHBOARD_TOKEN")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


if __name__ == "__main__":
    mode, *args = sys.argv[1:] or ["?"]
    if mode == "status" and len(args) == 2:
        sys.exit(0 if status(args[0], float(args[1])) else 1)
    if mode == "http" and len(args) == 1:
        sys.exit(0 if http(args[0]) else 1)
    sys.exit("usage: healthcheck.py status FILE MAX_AGE | http URL")
