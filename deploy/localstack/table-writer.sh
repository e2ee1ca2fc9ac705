#!/usr/bin/env bash
# Keeps the compose playback table busy: every 5 s, each of VIEWERS players (at most
# 25: one BatchWriteItem) writes a heartbeat item (PK = stream id, SK = player uuid,
# the playhead advancing 5 s), as a player backend writing to DynamoDB would. The
# `source` service turns the table's stream into `playback.cdc.playback` and, through
# its mapping (deploy/compose/source.toml), into `playback.events`.
# Runs in the LocalStack image (it has the AWS CLI) against http://localstack:4566.
set -euo pipefail

TABLE="${PLAYLAKE_TABLE:-playback}"
VIEWERS="${VIEWERS:-20}"
STREAMS="${STREAMS:-4}"
ENDPOINT="${AWS_ENDPOINT_URL:-http://localstack:4566}"
((VIEWERS >= 1 && VIEWERS <= 25)) || { echo "VIEWERS must be 1..25" >&2; exit 2; }

tick=0
while true; do
    now_ms=$(($(date +%s) * 1000))
    if ((tick == 0)); then kind=start; else kind=heartbeat; fi
    start=$(((tick > 0 ? tick - 1 : 0) * 5))
    end=$((tick * 5))
    items=""
    for ((v = 0; v < VIEWERS; v++)); do
        items+="${items:+,}{\"PutRequest\": {\"Item\": {
            \"PK\": {\"S\": \"table-stream-$((v % STREAMS))\"},
            \"SK\": {\"S\": \"table-player-$v\"},
            \"user_id\": {\"S\": \"table-user-$v\"},
            \"event_type\": {\"S\": \"$kind\"},
            \"event_time\": {\"N\": \"$now_ms\"},
            \"position_start\": {\"N\": \"$start\"},
            \"position\": {\"N\": \"$end\"}}}}"
    done
    aws --endpoint-url "$ENDPOINT" dynamodb batch-write-item \
        --request-items "{\"$TABLE\": [$items]}" >/dev/null \
        || echo "table-writer: batch-write-item failed; retrying in 5 s" >&2
    tick=$((tick + 1))
    sleep 5
done
