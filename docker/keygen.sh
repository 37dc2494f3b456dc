#!/bin/sh
# One-shot init container: create the signer's ML-DSA-65 key pair once (an existing key is
# never replaced) and publish only its public half to the trust volume for the verifiers
# and the dashboard. The private key stays in the signer-keys volume.
set -eu
if [ ! -f /keys/signer.pem ]; then
  ledgerstream keys generate --out /keys/signer.pem
fi
cp /keys/signer.pem.pub /trust/signer.pub.pem
echo "signer public key published to /trust/signer.pub.pem"
