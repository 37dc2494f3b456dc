#!/bin/sh
# Entrypoint of the signer containers: turn $LEDGERSTREAM_TSA_URLS (space-separated RFC 3161
# TSA URLs) into repeated --tsa-url options of the command, then run it.
set -eu
for url in ${LEDGERSTREAM_TSA_URLS:-}; do
  set -- "$@" --tsa-url "$url"
done
exec "$@"
