#!/usr/bin/env bash
# Stops the services tests/stack/start.sh started (pids in .stack/pids) and removes
# .stack/env. Safe to run when nothing is running. --quiet: say nothing then.
set -euo pipefail

# shellcheck source=tests/stack/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PIDS_FILE="$STACK_DIR/pids"
quiet=false
[[ "${1:-}" == "--quiet" ]] && quiet=true

rm -f "$ENV_FILE"
if [[ ! -s "$PIDS_FILE" ]]; then
    $quiet || log "nothing to stop"
    exit 0
fi

pids=()
while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
        $quiet || log "stopping $name (pid $pid)"
    fi
done <"$PIDS_FILE"

deadline=$((SECONDS + 10))
for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
done
rm -f "$PIDS_FILE"
$quiet || log "stopped"
