"""The hand-written Python peer of the sink benchmark (confluent-kafka + pyarrow).

Reads `<prefix>.events` from the beginning to the end it had at start, validates and
normalises each record the way SPEC section 2 says (defaults, event_time in RFC 3339 or
epoch ms, the derived event_id recipe), and writes the events table exactly as
`playlake sink` lays it out: `events/dt=YYYY-MM-DD/hour=HH/*.parquet`, zstd, partition
columns not stored, a file rolled when its partition's buffer reaches the target size.
Written to be fair: batched consume (10k records per call), columnar buffers, one
pyarrow write per file, no per-record round trips.

Usage: python_sink.py BROKERS TOPIC OUT_DIR TARGET_FILE_BYTES
Prints one JSON object with rows, bytes read, seconds and the files written.
"""

import hashlib
import json
import math
import os
import sys
import time
import uuid as uuidlib
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, TopicPartition

TYPES = {"start", "heartbeat", "pause", "resume", "seek", "stop"}
SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("uuid", pa.string()),
        ("stream_id", pa.string()),
        ("user_id", pa.string()),
        ("event_type", pa.string()),
        ("event_time", pa.timestamp("ms", tz="UTC")),
        ("position_start", pa.float64()),
        ("position_end", pa.float64()),
    ]
)


def js_number(x):
    if x == int(x) and abs(x) < 1e21:
        return str(int(x))
    return repr(x)


def event_time_ms(value):
    if isinstance(value, bool):
        raise ValueError("event_time")
    if isinstance(value, (int, float)):
        return int(value)
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return int(dt.timestamp() * 1000)


def parse(raw):
    e = json.loads(raw)
    if not isinstance(e, dict) or not e.get("uuid") or not e.get("stream_id"):
        raise ValueError("invalid")
    kind = e.get("event_type") or "heartbeat"
    if kind not in TYPES:
        raise ValueError("event_type")
    t = event_time_ms(e["event_time"])
    end = e.get("position_end")
    start = e.get("position_start")
    if end is None:
        if kind != "start":
            raise ValueError("position_end")
        start = start or 0.0
        end = start
    if start is None:
        start = end
    start, end = float(start), float(end)
    if not (math.isfinite(start) and math.isfinite(end)) or (kind != "seek" and end < start):
        raise ValueError("positions")
    event_id = e.get("event_id")
    if event_id is None:
        text = "\x1f".join([e["uuid"], str(t), kind, js_number(start), js_number(end)])
        event_id = hashlib.sha256(text.encode()).hexdigest()[:32]
    return event_id, e["uuid"], e["stream_id"], e.get("user_id"), kind, t, start, end


class Partition:
    def __init__(self):
        self.columns = [[] for _ in SCHEMA]
        self.bytes = 0


def main():
    brokers, topic, out, target = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"python-sink-{uuidlib.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 52428800,
        }
    )
    meta = consumer.list_topics(topic, timeout=30)
    ends = {}
    for p in meta.topics[topic].partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        if high > low:
            ends[p] = high
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    started = time.perf_counter()
    parts, files, rows, invalid, read_bytes = {}, [], 0, 0, 0
    done = set()

    def flush(key, part):
        if not part.columns[0]:
            return
        dt, hour = key
        directory = os.path.join(out, "events", f"dt={dt}", f"hour={hour:02d}")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"part-{len(files):06d}.parquet")
        table = pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(part.columns, SCHEMA)], schema=SCHEMA
        )
        pq.write_table(table, path, compression="zstd")
        files.append(os.path.getsize(path))
        part.columns = [[] for _ in SCHEMA]
        part.bytes = 0

    while len(done) < len(ends):
        for msg in consumer.consume(num_messages=10000, timeout=1.0):
            if msg.error():
                continue
            p, offset, value = msg.partition(), msg.offset(), msg.value()
            if offset + 1 >= ends.get(p, 0):
                done.add(p)
            if offset >= ends.get(p, 0):
                continue
            read_bytes += len(value or b"")
            try:
                row = parse(value)
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                invalid += 1
                continue
            when = datetime.fromtimestamp(row[5] / 1000, tz=timezone.utc)
            key = (when.strftime("%Y-%m-%d"), when.hour)
            part = parts.setdefault(key, Partition())
            for column, value in zip(part.columns, row):
                column.append(value)
            # Uncompressed estimate; playlake rolls on its own buffered estimate too.
            part.bytes += 90 + len(row[0]) + len(row[1]) + len(row[2])
            rows += 1
            if part.bytes >= target:
                flush(key, part)
    for key, part in parts.items():
        flush(key, part)
    seconds = time.perf_counter() - started
    consumer.close()
    print(
        json.dumps(
            {
                "rows": rows,
                "invalid": invalid,
                "bytes_read": read_bytes,
                "seconds": seconds,
                "rows_per_second": rows / seconds,
                "mb_per_second": read_bytes / seconds / 1e6,
                "files": len(files),
                "largest_file_bytes": max(files, default=0),
                "total_file_bytes": sum(files),
            }
        )
    )


if __name__ == "__main__":
    main()
