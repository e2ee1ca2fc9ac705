"""The hand-written Python peer of the sink benchmark (confluent-kafka + pyarrow).

Reads `<prefix>.events` from the beginning to the end it had at start, validates and
normalises each record the way SPEC section 2 says (python_pipeline.parse: defaults,
event_time in RFC 3339 or epoch ms, the derived event_id recipe, every DLQ rule), and
writes the events table exactly as `playlake sink` lays it out:
`events/dt=YYYY-MM-DD/hour=HH/*.parquet`, zstd, partition columns not stored, a file
rolled when its partition's buffer reaches the target size.
Written to be fair: batched consume (10k records per call), columnar buffers, one
pyarrow write per file, no per-record round trips.

Usage: python_sink.py BROKERS TOPIC OUT_DIR TARGET_FILE_BYTES
       python_sink.py --file RECORDS_FILE OUT_DIR TARGET_FILE_BYTES
The second form reads the records pre-fetched from a `playlake-bench sink gen` file
(no broker: the sink's own speed), in batches of the same 10,000 and through the same
parsing, partitioning and writing code.
Prints one JSON object with rows, bytes read, seconds, CPU seconds, peak RSS and the
files written.
"""

import json
import mmap
import os
import resource
import struct
import sys
import time
import uuid as uuidlib
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, TopicPartition

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


# The SPEC section 2 validation and normalisation of the Python pipeline peer, so
# this sink accepts exactly the records playlake's sink accepts (bad records of every
# kind the generator makes are rejected the same way).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_pipeline import Invalid, parse as parse_event  # noqa: E402

NOW_MS = int(time.time() * 1000)


def parse(raw):
    return parse_event(raw, NOW_MS)


class Partition:
    def __init__(self):
        self.columns = [[] for _ in SCHEMA]
        self.bytes = 0


class Sink:
    """Partitions parsed rows by (dt, hour) and writes a file when a partition's
    buffer reaches the target size; the same code for both input modes."""

    def __init__(self, out, target):
        self.out, self.target = out, target
        self.parts, self.files, self.rows, self.invalid, self.read_bytes = {}, [], 0, 0, 0

    def flush(self, key, part):
        if not part.columns[0]:
            return
        dt, hour = key
        directory = os.path.join(self.out, "events", f"dt={dt}", f"hour={hour:02d}")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"part-{len(self.files):06d}.parquet")
        table = pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(part.columns, SCHEMA)], schema=SCHEMA
        )
        pq.write_table(table, path, compression="zstd")
        self.files.append((os.path.relpath(directory, self.out), os.path.getsize(path), len(part.columns[0])))
        part.columns = [[] for _ in SCHEMA]
        part.bytes = 0

    def add(self, value):
        self.read_bytes += len(value or b"")
        try:
            row = parse(value)
        except Invalid:
            self.invalid += 1
            return
        when = datetime.fromtimestamp(row[5] / 1000, tz=timezone.utc)
        key = (when.strftime("%Y-%m-%d"), when.hour)
        part = self.parts.get(key)
        if part is None:
            part = self.parts[key] = Partition()
        for column, value in zip(part.columns, row):
            column.append(value)
        # Uncompressed estimate; playlake rolls on its own buffered estimate too.
        part.bytes += 90 + len(row[0]) + len(row[1]) + len(row[2])
        self.rows += 1
        if part.bytes >= self.target:
            self.flush(key, part)

    def finish(self):
        for key, part in self.parts.items():
            self.flush(key, part)

    def figures(self, seconds, cpu_seconds):
        sizes = [size for _, size, _ in self.files]
        return {
            "rows": self.rows,
            "invalid": self.invalid,
            "bytes_read": self.read_bytes,
            "seconds": seconds,
            "rows_per_second": self.rows / seconds,
            "mb_per_second": self.read_bytes / seconds / 1e6,
            "cpu_seconds": cpu_seconds,
            "rows_per_cpu_second": self.rows / max(cpu_seconds, 1e-9),
            # ru_maxrss is in KiB on Linux.
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "files": len(self.files),
            "largest_file_bytes": max(sizes, default=0),
            "total_file_bytes": sum(sizes),
            "file_list": [{"dir": d, "bytes": b, "rows": r} for d, b, r in self.files],
        }


def from_kafka(brokers, topic, out, target):
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
    started, cpu_started = time.perf_counter(), time.process_time()
    sink = Sink(out, target)
    done = set()
    while len(done) < len(ends):
        for msg in consumer.consume(num_messages=10000, timeout=1.0):
            if msg.error():
                continue
            p, offset = msg.partition(), msg.offset()
            if offset + 1 >= ends.get(p, 0):
                done.add(p)
            if offset >= ends.get(p, 0):
                continue
            sink.add(msg.value())
    sink.finish()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    consumer.close()
    return sink.figures(seconds, cpu)


def read_batches(path, batch=10000):
    """The records of a `playlake-bench sink gen` file, 10,000 values at a time (as
    many as one consume() call above): [u32 LE key length][key][u32 LE value length]
    [value] each."""
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        unpack, pos, end, values = struct.Struct("<I").unpack_from, 0, len(data), []
        while pos < end:
            (klen,) = unpack(data, pos)
            pos += 4 + klen
            (vlen,) = unpack(data, pos)
            pos += 4
            values.append(data[pos : pos + vlen])
            pos += vlen
            if len(values) == batch:
                yield values
                values = []
        if values:
            yield values


def from_file(path, out, target):
    started, cpu_started = time.perf_counter(), time.process_time()
    sink = Sink(out, target)
    for values in read_batches(path):
        for value in values:
            sink.add(value)
    sink.finish()
    return sink.figures(time.perf_counter() - started, time.process_time() - cpu_started)


def main():
    if sys.argv[1] == "--file":
        figures = from_file(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        brokers, topic, out, target = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
        figures = from_kafka(brokers, topic, out, target)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
