#!/bin/sh
# One-shot init container: create the signer's ML-DSA-65 key pair and each verifier's alert
# key pair once (an existing key is never replaced) and publish only the public halves to
# the trust volume for the verifiers, the dashboard and readers of alerts. Each private key
# stays in its own volume, mounted only by the service that signs with it.
set -eu
if [ ! -f /keys/signer.pem ]; then
  # also signer-ed25519.pem (the checkpoints' standard note key) and signer.vkey (docs/witnesses.md)
  ledgerstream keys generate --out /keys/signer.pem --origin "${LEDGERSTREAM_ORIGIN:-ledgerstream/compose}"
fi
cp /keys/signer.pem.pub /trust/signer.pub.pem
cp /keys/signer.vkey /trust/signer.vkey
echo "signer public key published to /trust/signer.pub.pem, its note vkeys to /trust/signer.vkey"
for id in v1 v2 index; do  # the index publishes its findings as alerts too
  if [ ! -f "/verifier-keys/$id/verifier-$id.pem" ]; then
    ledgerstream keys generate --out "/verifier-keys/$id/verifier-$id.pem"
  fi
  cp "/verifier-keys/$id/verifier-$id.pem.pub" "/trust/verifier-$id.pub.pem"
  echo "verifier $id alert public key published to /trust/verifier-$id.pub.pem"
done
