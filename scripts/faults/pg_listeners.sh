#!/usr/bin/env bash
# Fault: a PostgreSQL change listener frozen or gone while admin commands
# change an account. Starts a throwaway PostgreSQL server on loopback
# (.ci/services.sh: installed from Debian's packages if missing), then runs
# scripts/faults/pg_listeners.py against two release example servers on it.
# One command:
#
#     bash scripts/faults/pg_listeners.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/services.sh
start_postgres
python3 scripts/faults/pg_listeners.py
