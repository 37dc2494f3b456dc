#!/usr/bin/env bash
# Set up, start the dev stack, run a multi-agent demo and verify the ledger.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
LS=.venv/bin/ledgerstream
$LS dev up --detach
$LS demo --agents 3 --events 600
$LS verify
$LS dev status
echo
echo "The stack keeps running. Next: '$LS replay --agent demo-planner --follow-links',"
echo "'$LS alerts', the dashboard URL above, and '$LS dev down' to stop."
