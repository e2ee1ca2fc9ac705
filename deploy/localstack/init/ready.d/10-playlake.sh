#!/usr/bin/env bash
# LocalStack ready hook (mounted at /etc/localstack/init/ready.d/ by
# docker-compose.yml; runs inside the LocalStack container once its services are up).
# Creates what the compose pipeline needs:
#   - the DynamoDB table `playback` (PK = stream id, SK = player uuid, as in seed 001)
#     with a NEW_AND_OLD_IMAGES stream, read by the `source` service,
#   - the lake bucket `playlake-lake` (the sink writes s3://playlake-lake/lake),
#   - a few playback items, so the source has changes to publish at once. Their
#     event times are on the day `playlake produce` generates (2025-06-01 UTC, the
#     generator's fixed start), so they do not move the processor's watermark ahead
#     of the producer's traffic. (The opt-in `table-writer` service writes live
#     heartbeats with the current time instead.)
# Idempotent: a restart of LocalStack with persistence finds everything in place.
set -euo pipefail

TABLE="${PLAYLAKE_TABLE:-playback}"
BUCKET="${PLAYLAKE_LAKE_BUCKET:-playlake-lake}"

if ! awslocal dynamodb describe-table --table-name "$TABLE" >/dev/null 2>&1; then
    awslocal dynamodb create-table \
        --table-name "$TABLE" \
        --attribute-definitions AttributeName=PK,AttributeType=S AttributeName=SK,AttributeType=S \
        --key-schema AttributeName=PK,KeyType=HASH AttributeName=SK,KeyType=RANGE \
        --billing-mode PAY_PER_REQUEST \
        --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES
    awslocal dynamodb wait table-exists --table-name "$TABLE"
fi
echo "playlake: table $TABLE stream: $(awslocal dynamodb describe-table --table-name "$TABLE" \
    --query Table.LatestStreamArn --output text)"

if ! awslocal s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1; then
    awslocal s3 mb "s3://$BUCKET"
fi
echo "playlake: bucket s3://$BUCKET"

# 2025-06-01T00:00:00Z, pipeline/generator's DEFAULT_START_TIME_MS.
day_start_ms=1748736000000
for i in 1 2 3; do
    awslocal dynamodb put-item --table-name "$TABLE" --item "{
        \"PK\": {\"S\": \"live-$i\"},
        \"SK\": {\"S\": \"seed-player-$i\"},
        \"user_id\": {\"S\": \"user-$i\"},
        \"event_type\": {\"S\": \"start\"},
        \"event_time\": {\"N\": \"$((day_start_ms + i * 1000))\"},
        \"position\": {\"N\": \"0\"}
    }" >/dev/null
done
echo "playlake: LocalStack is ready"
