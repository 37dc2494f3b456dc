#!/usr/bin/env bash
# Set up, start the dev stack, run a multi-agent demo and verify the ledger.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
LS=.venv/bin/ledgerstream
$LS dev up --detach
$LS demo --agents 3 --events 600
# demo returns once Kafka has the events; give the signer a moment to sequence them all
for _ in $(seq 1 60); do
  n=$($LS verify --json 2>/dev/null | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["entries"])' || echo 0)
  [ "$n" -ge 600 ] && break
  sleep 1
done
# the witnesses cosign each checkpoint within seconds (litewitness builds once with Go first)
for _ in $(seq 1 90); do
  w=$($LS verify --json 2>/dev/null | .venv/bin/python -c 'import json,sys; d=json.load(sys.stdin)["witnesses"]; print(int(d["witnessed_size"] >= 600 or not d["cosigned"]))' || echo 0)
  [ "$w" = 1 ] && break
  sleep 2
done
$LS verify
$LS witness status || true
$LS dev status
echo
echo "The stack keeps running. Next: '$LS replay --agent demo-planner --follow-links',"
echo "'$LS alerts', the dashboard URL above, and '$LS dev down' to stop."
