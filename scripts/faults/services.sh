#!/usr/bin/env bash
# Fault: PostgreSQL restarted, Redis stalled (SIGSTOP) and stopped, under
# load. Starts throwaway servers on loopback (.ci/services.sh: installed from
# Debian's packages if missing), then runs scripts/faults/services.py against
# the release example server with its store in PostgreSQL and its attempt
# limiter in Redis. One command:
#
#     bash scripts/faults/services.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/services.sh
start_postgres
start_redis
export FAULT_REDIS_DIR="$redis_dir"
export FAULT_REDIS_PORT="${TOWER_M2M_AUTH_REDIS_URL##*:}"
FAULT_REDIS_PORT="${FAULT_REDIS_PORT%/}"
python3 scripts/faults/services.py
