#!/usr/bin/env bash
# Starts the local test stack on free loopback ports and writes .stack/env:
#   - Tansu (Kafka API), storage from PLAYLAKE_STACK_TANSU_STORAGE
#     (default sqlite://tansu.db, recreated empty at every start). Not memory://:
#     Tansu 0.6.0's memory storage answers a fetch from an offset inside a stored batch
#     with the later batches only, so seeking to a checkpointed position would skip
#     records (tests/tests/broker_conformance.rs shows it; DESIGN.md section 7). Tansu
#     0.6.0 resolves the sqlite FILE against its working directory, which is .stack/,
#     even when it starts with / (sqlite:///tmp/x.db opens ./tmp/x.db): use a relative
#     name such as sqlite://tansu.db and start the broker where the file should live,
#   - moto's server (S3, DynamoDB, DynamoDB Streams).
# Waits until each service answers a real request; logs go to .stack/*.log.
# Running it again while the stack is up changes nothing. Stop with stop.sh.
set -euo pipefail

# shellcheck source=tests/stack/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

READY_TIMEOUT_SECONDS="${PLAYLAKE_STACK_TIMEOUT_SECONDS:-60}"
TANSU_STORAGE="${PLAYLAKE_STACK_TANSU_STORAGE:-sqlite://tansu.db}"
PIDS_FILE="$STACK_DIR/pids"

running() {
    [[ -f "$PIDS_FILE" && -f "$ENV_FILE" ]] || return 1
    local name pid
    while read -r name pid; do
        kill -0 "$pid" 2>/dev/null || return 1
    done <"$PIDS_FILE"
}

if running; then
    log "already running (env: $ENV_FILE)"
    exit 0
fi
"$(dirname "${BASH_SOURCE[0]}")/stop.sh" --quiet

[[ -x "$TANSU_BIN" ]] || die "Tansu is not installed at $TANSU_BIN; run tests/stack/install.sh"
[[ -x "$VENV/bin/moto_server" ]] || die "moto is not installed in $VENV; run tests/stack/install.sh"

mkdir -p "$STACK_DIR"
: >"$PIDS_FILE"

# Starts "$@" in the background with its output in .stack/NAME.log and records its pid.
spawn() {
    local name="$1"
    shift
    : >"$STACK_DIR/$name.log"
    nohup "$@" >>"$STACK_DIR/$name.log" 2>&1 </dev/null &
    echo "$name $!" >>"$PIDS_FILE"
}

# Polls until PROBE... succeeds, the process NAME dies, or the deadline passes.
wait_ready() {
    local name="$1" pid
    shift
    pid="$(awk -v n="$name" '$1 == n { print $2 }' "$PIDS_FILE")"
    local deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    until "$@" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            fail "$name exited before it was ready"
        fi
        if ((SECONDS >= deadline)); then
            fail "$name did not answer within ${READY_TIMEOUT_SECONDS}s"
        fi
        sleep 0.2
    done
    log "$name is ready"
}

fail() {
    log "ERROR: $1"
    local file
    for file in "$STACK_DIR"/*.log; do
        [[ -f "$file" ]] || continue
        printf '%s\n' "----- last lines of $file -----" >&2
        tail -n 40 "$file" >&2
    done
    "$(dirname "${BASH_SOURCE[0]}")/stop.sh" --quiet
    exit 1
}

KAFKA_PORT="$(free_port)"
MOTO_PORT="$(free_port)"
while [[ "$MOTO_PORT" == "$KAFKA_PORT" ]]; do MOTO_PORT="$(free_port)"; done
BROKERS="127.0.0.1:$KAFKA_PORT"
AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT"

spawn moto "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT"

# Tansu 0.6.0 (`tansu broker --help`): the Kafka listener and the advertised listener
# on the same loopback port; no schema registry, no OTLP export. Tansu reads settings
# from the environment and from a .env file in its working directory, so it runs in
# .stack/ with those variables removed: only the flags below count.
# Each run starts from an empty broker.
if [[ "$TANSU_STORAGE" == sqlite://* ]]; then
    rm -f "$STACK_DIR/${TANSU_STORAGE#sqlite://}"*
fi
TANSU_ARGS=(
    broker
    --cluster-id playlake-test
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT"
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT"
    --storage-engine "$TANSU_STORAGE"
)
(
    cd "$STACK_DIR"
    spawn tansu env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL \
        -u STORAGE_ENGINE -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT \
        RUST_LOG="${PLAYLAKE_STACK_TANSU_LOG:-warn}" "$TANSU_BIN" "${TANSU_ARGS[@]}"
)

PROBE=("$VENV_PYTHON" "$REPO_ROOT/tests/stack/probe.py")
wait_ready moto "${PROBE[@]}" http "$AWS_ENDPOINT/"
wait_ready tansu "${PROBE[@]}" kafka "$BROKERS"

tmp="$(mktemp "$STACK_DIR/env.XXXXXX")"
cat >"$tmp" <<ENV
# Written by tests/stack/start.sh; source it to reach the local test stack.
export PLAYLAKE_TEST_BROKERS=$BROKERS
export PLAYLAKE_TEST_AWS_ENDPOINT=$AWS_ENDPOINT
export PLAYLAKE_TEST_PYTHON=$VENV_PYTHON
export PLAYLAKE_TEST_TANSU=$TANSU_BIN
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
ENV
mv "$tmp" "$ENV_FILE"
log "Tansu on $BROKERS ($TANSU_STORAGE), moto on $AWS_ENDPOINT"
log "env: $ENV_FILE"
