"""A SCRIPTED DynamoDB Streams endpoint for the source's shard-lineage tests.

moto serves one shard per table that never splits, closes or expires, so it cannot
show lineage. This server answers the DynamoDB Streams operations (DescribeStream,
GetShardIterator, GetRecords) from a fixed script shaped like recorded AWS
responses: a root shard that closed, a child that closed and split into two open
children, and an open shard whose parent was trimmed; DescribeStream pages two shards
at a time. It injects one ExpiredIteratorException and one LimitExceededException.

Scenario "trimmed": one open shard whose records 100 and 101 the 24 h retention
removed; 102-104 are kept. As on AWS, GetShardIterator AFTER_SEQUENCE_NUMBER of a
trimmed record answers TrimmedDataAccessException, TRIM_HORIZON starts at 102.
Scenario "trimmed-always": every GetRecords answers TrimmedDataAccessException (the
horizon moving under every iterator: not seen on AWS, it checks the source backs off
instead of spinning or counting the loss again).
moto cannot produce TrimmedDataAccessException at all (its streams keep every record).
Scenario "bench:N" (bench/source_bench.py): one open shard of N MODIFY records shaped
like seed 001's playback table (NEW_AND_OLD_IMAGES, about 600 bytes each), served up
to 1,000 per GetRecords call (AWS's ceiling) from pre-serialized pages, so the
server costs little next to the source it measures.
Every other request (DynamoDB itself: DescribeTable, the lease table) is forwarded
unchanged to moto, so leases are real.

Usage: scripted_streams.py MOTO_ENDPOINT SCENARIO  -> prints the port it listens on.
"""

import json
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MOTO = sys.argv[1]
SCENARIO = sys.argv[2] if len(sys.argv) > 2 else "lineage"
LOCK = threading.Lock()
FAULTS = {"expired": 1, "throttle": 1}


def rec(seq, name, key, version):
    image = {"pk": {"S": key}, "v": {"N": str(version)}}
    body = {
        "ApproximateCreationDateTime": 1748736000 + seq % 1000,
        "Keys": {"pk": {"S": key}},
        "SequenceNumber": str(seq),
        "SizeBytes": 40,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if name != "REMOVE":
        body["NewImage"] = image
    if name != "INSERT":
        body["OldImage"] = {"pk": {"S": key}, "v": {"N": str(version - 1)}}
    return {
        "eventID": f"ev-{seq}",
        "eventName": name,
        "eventSource": "aws:dynamodb",
        "eventVersion": "1.1",
        "awsRegion": "us-east-1",
        "dynamodb": body,
    }


# shard id -> (parent, closed, records). Sequence numbers grow along the lineage,
# as on AWS. Ids sort so that children come before parents in DescribeStream.
SHARDS = {
    "shardId-0004-x": ("shardId-0000-trimmed", False, [rec(500, "INSERT", "k9", 1)]),
    "shardId-0003-d": ("shardId-0002-b", False, [rec(400, "MODIFY", "k2", 3)]),
    "shardId-0003-c": ("shardId-0002-b", False, [rec(300, "MODIFY", "k1", 4)]),
    "shardId-0002-b": ("shardId-0001-a", True, [rec(200, "MODIFY", "k1", 3), rec(201, "MODIFY", "k2", 2)]),
    "shardId-0001-a": (None, True, [rec(100, "INSERT", "k1", 1), rec(101, "MODIFY", "k1", 2), rec(102, "INSERT", "k2", 1)]),
}
TRIM_BELOW = 0
if SCENARIO in ("trimmed", "trimmed-always"):
    SHARDS = {"shardId-0001-t": (None, False, [rec(102, "INSERT", "t1", 1), rec(103, "MODIFY", "t1", 2), rec(104, "INSERT", "t2", 1)])}
    TRIM_BELOW = 102
PAGES = {}
if SCENARIO.startswith("bench:"):
    def playback(seq):
        n = seq - 1_000_000
        image = lambda pos: {
            "PK": {"S": f"stream-{n % 50:03d}"}, "SK": {"S": f"player-{n % 20000:05d}-7d3c2b9e-4f1a"},
            "user_id": {"S": f"user-{n % 15000:05d}"}, "event_type": {"S": "heartbeat"},
            "event_time": {"N": str(1748736000000 + n * 10)}, "position": {"N": f"{pos}.25"},
            "expDate": {"N": str(1748739600 + n // 100)}, "device": {"M": {"os": {"S": "android"}, "app": {"S": "7.12.0"}}},
        }
        r = rec(seq, "MODIFY", "x", 1)
        r["dynamodb"] = {
            "ApproximateCreationDateTime": 1748736000 + n // 1000,
            "Keys": {"PK": image(0)["PK"], "SK": image(0)["SK"]},
            "NewImage": image(n % 3600 + 5), "OldImage": image(n % 3600),
            "SequenceNumber": str(seq), "SizeBytes": 600, "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        return r
    BENCH_N = int(SCENARIO.split(":", 1)[1])
    SHARDS = {"shardId-0001-bench": (None, False, [playback(1_000_000 + i) for i in range(BENCH_N)])}
    # Serialized before the port is printed, so no measured call pays for it.
    for start in range(0, BENCH_N + 1, 1000):
        end = min(start + 1000, BENCH_N)
        PAGES[(start, 1000)] = json.dumps({"Records": SHARDS["shardId-0001-bench"][2][start:end],
                                           "NextShardIterator": f"shardId-0001-bench|{end}"}).encode()
ORDER = sorted(SHARDS)


def describe(body):
    start = body.get("ExclusiveStartShardId")
    ids = ORDER[ORDER.index(start) + 1:] if start else ORDER
    page, rest = ids[:2], ids[2:]
    shards = []
    for sid in page:
        parent, closed, records = SHARDS[sid]
        rng = {"StartingSequenceNumber": records[0]["dynamodb"]["SequenceNumber"]}
        if closed:
            rng["EndingSequenceNumber"] = records[-1]["dynamodb"]["SequenceNumber"]
        shard = {"ShardId": sid, "SequenceNumberRange": rng}
        if parent:
            shard["ParentShardId"] = parent
        shards.append(shard)
    desc = {
        "StreamArn": body["StreamArn"],
        "StreamStatus": "ENABLED",
        "StreamViewType": "NEW_AND_OLD_IMAGES",
        "Shards": shards,
    }
    if rest:
        desc["LastEvaluatedShardId"] = page[-1]
    return 200, {"StreamDescription": desc}


def iterator(body):
    sid = body["ShardId"]
    records = SHARDS[sid][2]
    kind = body["ShardIteratorType"]
    if kind == "TRIM_HORIZON":
        index = 0
    elif kind == "AFTER_SEQUENCE_NUMBER":
        seq = int(body["SequenceNumber"])
        if seq + 1 < TRIM_BELOW:
            return 400, {"__type": "com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException", "message": "trimmed"}
        index = len([r for r in records if int(r["dynamodb"]["SequenceNumber"]) <= seq])
    else:
        return 400, {"__type": "ValidationException", "message": kind}
    return 200, {"ShardIterator": f"{sid}|{index}"}


def get_records(body):
    sid, index = body["ShardIterator"].rsplit("|", 1)
    index = int(index)
    if SCENARIO == "trimmed-always":
        return 400, {"__type": "com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException", "message": "trimmed"}
    with LOCK:
        if sid == "shardId-0003-c" and FAULTS["expired"] > 0:
            FAULTS["expired"] -= 1
            return 400, {"__type": "com.amazonaws.dynamodb.v20120810#ExpiredIteratorException", "message": "expired"}
        if sid == "shardId-0003-d" and FAULTS["throttle"] > 0:
            FAULTS["throttle"] -= 1
            return 400, {"__type": "com.amazonaws.dynamodb.v20120810#LimitExceededException", "message": "slow down"}
    parent, closed, records = SHARDS[sid]
    limit = int(body.get("Limit", 1000))
    if SCENARIO.startswith("bench:"):
        key = (index, min(limit, 1000))
        with LOCK:
            page = PAGES.get(key)
            if page is None:
                end = min(index + key[1], len(records))
                page = PAGES[key] = json.dumps({"Records": records[index:end], "NextShardIterator": f"{sid}|{end}"}).encode()
        return 200, page
    # One record per call: lineage and checkpoints are exercised record by record.
    limit = min(limit, 1)
    batch = records[index:index + limit]
    out = {"Records": batch}
    end = index + len(batch)
    if not (closed and end >= len(records)):
        out["NextShardIterator"] = f"{sid}|{end}"
    return 200, out


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        target = self.headers.get("X-Amz-Target", "")
        if target.startswith("DynamoDBStreams_20120810."):
            op = target.split(".", 1)[1]
            body = json.loads(raw or b"{}")
            handler = {"DescribeStream": describe, "GetShardIterator": iterator, "GetRecords": get_records}.get(op)
            status, out = handler(body) if handler else (400, {"__type": "UnknownOperationException"})
            data = out if isinstance(out, bytes) else json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        # DynamoDB: forward to moto as it is.
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        req = urllib.request.Request(MOTO + self.path, data=raw, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req) as resp:
                status, data, ctype = resp.status, resp.read(), resp.headers.get("Content-Type")
        except urllib.error.HTTPError as err:
            status, data, ctype = err.code, err.read(), err.headers.get("Content-Type")
        self.send_response(status)
        self.send_header("Content-Type", ctype or "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
