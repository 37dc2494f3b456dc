"""Write the signed-alert vector tests/vectors/alert_signature/alert_v1.json
(run once: python3 tests/vectors/gen_alert_signature.py; docs/spec.md section 10).

One genuine alert as a verifier publishes it: signed with ``ledgerstream.core.alert_signature
.sign_alert`` under a key from a fixed seed (``SHA-256("ledgerstream alert signature vector
seed v1")``), with the public key, its key_id, the exact signing input and the signature in
hex, and the Avro single-object record as it travels on the alerts topic. Signatures are hedged
(randomized), so a rerun writes a different but equally valid signature.
tests/unit/test_alert_signature_vector.py checks the file with pyca/cryptography alone.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ledgerstream.core import mldsa  # noqa: E402
from ledgerstream.core.wire import codec  # noqa: E402
from ledgerstream.core.alert_signature import alert_signing_input, sign_alert  # noqa: E402

OUT = Path(__file__).resolve().parent / "alert_signature" / "alert_v1.json"
SEED = hashlib.sha256(b"ledgerstream alert signature vector seed v1").digest()

ALERT = {
    "alert_id": "4f1c2a9e0b7d4c3e8a6f5b2d1c0e9f8a",
    "kind": "fork",
    "severity": "critical",
    "seq_from": 7,
    "seq_to": 7,
    "agent_id": "billing-bot",
    "detail": 'two signed entries claim seq 7 ("fork"), café',
    "evidence": {"key_id": "00" * 32, "offset": "14", "topic": "ledgerstream.entries"},
    "verifier_id": "v1",
    "time": 1767225600000000,
}


def vector() -> dict:
    key = mldsa.PrivateKey.from_seed(SEED, "pyca")
    signed = sign_alert(ALERT, key)
    message = alert_signing_input(signed)
    pub = key.public_key()
    return {
        "spec": "docs/spec.md section 10: signed alerts",
        "provenance": "tests/vectors/gen_alert_signature.py (ledgerstream.core.alert_signature.sign_alert, pyca backend)",
        "algorithm": "ML-DSA-65 (FIPS 204), pure, empty context",
        "tag": "ledgerstream/v1/alert-signature\\0",
        "seed": SEED.hex(),
        "public_key": pub.raw.hex(),
        "key_id": pub.key_id,
        "alert": {**{k: v for k, v in signed.items() if k != "signature"}, "signature": signed["signature"].hex()},
        "signing_input": message.hex(),
        "signature": signed["signature"].hex(),
        "record": codec.encode("Alert", signed).hex(),
    }


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(vector(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
