"""Run the vendored Wycheproof ML-DSA-65 verify vectors against one liboqs shared library.

Used by scripts/install_liboqs.sh after a build (and to decide whether an existing install
must be rebuilt): standalone, ctypes only, so it also runs in the Dockerfile's build stage
where ledgerstream is not installed. Exit 0 if every vector gets its expected verdict.
Usage: check_liboqs_vectors.py LIBOQS_SO VECTORS_JSON
"""
from __future__ import annotations

import ctypes
import json
import sys


def disagreements(library: str, vectors: str) -> tuple[int, list[str]]:
    """(vectors run, one line per vector whose verdict differs from the expected one)."""
    lib = ctypes.CDLL(library)
    lib.OQS_init()
    lib.OQS_SIG_new.restype = ctypes.c_void_p
    lib.OQS_SIG_new.argtypes = [ctypes.c_char_p]
    lib.OQS_SIG_verify_with_ctx_str.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
    ]
    sig = lib.OQS_SIG_new(b"ML-DSA-65")
    if not sig:
        return 0, ["OQS_SIG_new(ML-DSA-65) returned NULL"]
    data = json.loads(open(vectors, encoding="utf-8").read())
    run, bad = 0, []
    for group in data["testGroups"]:
        public = bytes.fromhex(group["publicKey"])
        for test in group["tests"]:
            run += 1
            message, signature = bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])
            context = bytes.fromhex(test.get("ctx", ""))
            # liboqs reads 1952 bytes of key unchecked: wrong-length keys never reach it
            ok = len(public) == 1952 and len(context) <= 255 and lib.OQS_SIG_verify_with_ctx_str(
                sig, message, len(message), signature, len(signature), context, len(context), public) == 0
            if ok != (test["result"] == "valid"):
                bad.append(f"tcId {test['tcId']} ({', '.join(test['flags'])}): expected {test['result']}, "
                           f"liboqs {'accepts' if ok else 'rejects'}")
    return run, bad


if __name__ == "__main__":
    count, failures = disagreements(sys.argv[1], sys.argv[2])
    for line in failures:
        print(f"  {line}", file=sys.stderr)
    print(f"liboqs vs Wycheproof ML-DSA-65 verify: {count - len(failures)}/{count} vectors agree",
          file=sys.stderr)
    sys.exit(1 if failures or not count else 0)
