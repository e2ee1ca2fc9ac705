"""The independent checker of the chaos run: reads the input topic, the side topics and
the lake with confluent-kafka, boto3, pyarrow and DuckDB (no playlake code) and proves
what SPEC sections 3-5 promise after crashes:

1. Inputs. `<prefix>.events` is read from the beginning of every partition to its
   end. Each record is validated by SPEC section 2 (bench/peers/python_pipeline.py's
   `parse`, a Python implementation of the contract). Records keyed `ddb-...` come
   from the DynamoDB source; the rest from `playlake produce`, whose count must equal
   the `records_sent` it reported (nothing lost or added by the broker). The
   DynamoDB writer's log (`--dynamodb-truth`) says which items were written: every
   valid item must be in the topic as a playback event with exactly the fields the
   mapping promises (and nothing else keyed `ddb-` may be), every invalid item must
   be dead-lettered by the source.
2. Exactly one place. Every distinct valid event (uuid, event_id) is in the `events`
   table exactly once, with its fields; every invalid record of the events topic is
   in the `errors` table exactly once (by topic, partition, offset) with the reason
   code the contract gives; every invalid DynamoDB item is in `errors` (from the
   CDC topic); nothing else is in either table. Late events (`<prefix>.late`) are
   valid events (so also in `events`); each late claim is checked against the
   watermark in its header (viewers: window end <= W; daily: day end <= W; sessions:
   event_time + gap < W, else the claim rests on DESIGN.md's refinement "would change
   an already-emitted session" and is counted, not failed).
3. Results. Sessions, viewer windows and daily stats are recomputed in batch from the
   SPEC section 3 definitions over the distinct valid events, leaving out of each
   operator the events that were late for it, and compared row by row (every column,
   and the `dt`/`stream_id` partition of the row) with the lake: each natural key
   exactly once, no extra keys. Watched seconds are summed exactly (fractions) and
   rounded once, as the processor's fixed-point sum is.
4. Per stream: counts of events, sessions, viewer windows and daily rows per stream_id
   in the lake equal the recomputation's.
5. Two readers: the row counts of every table are read with DuckDB as well and must
   equal pyarrow's.

Usage: checker.py --brokers B --prefix P --lake s3://bucket/prefix --s3-endpoint URL
                  --dynamodb-truth FILE --produce-report FILE --partitions N
                  [--output FILE] [--session-gap-ms 30000] [--viewer-window-ms 30000]
Prints the figures as JSON (and writes them to --output); exits 1 when any mismatch
is found, 0 otherwise.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from fractions import Fraction
from urllib.parse import unquote

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench", "peers"))

import boto3  # noqa: E402
import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402
from confluent_kafka import Consumer, KafkaError, TopicPartition  # noqa: E402

from python_pipeline import Invalid, parse  # noqa: E402

DAY_MS = 86_400_000
MAX_DETAILS = 20
DDB_PREFIX = b"ddb-"
PARTITIONS = {"sessions": ["dt", "stream_id"], "viewers": ["dt", "stream_id"],
              "daily": ["dt"], "events": ["dt", "hour"], "errors": ["dt"]}


class Mismatches:
    """Counts mismatches per kind and keeps the first few of each as examples."""

    def __init__(self):
        self.count = Counter()
        self.examples = defaultdict(list)

    def add(self, kind, detail):
        self.count[kind] += 1
        if len(self.examples[kind]) < MAX_DETAILS:
            self.examples[kind].append(detail)

    def total(self):
        return sum(self.count.values())


def day(t):
    return datetime.fromtimestamp(t // DAY_MS * DAY_MS / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


# ------------------------------------------------------------------ Kafka


# Reading a topic fails when no record arrives for READ_STALL_S: a slow broker is not a
# failure as long as it delivers (a million records from Tansu's sqlite storage take
# about 20 minutes on 2 cores: one header query per record), a stuck one is.
READ_STALL_S = 300
# Tansu's sqlite fetch (tansu-storage 0.6.0, record_fetch.sql) computes a running byte
# sum over *every* record from the fetch offset to the high watermark before cutting
# at the requested size, so one fetch costs what is left of the partition, whatever
# it returns. Read from the beginning in librdkafka's default 1 MiB per partition,
# a million-record topic took hundreds of fetches over all partitions at once, some
# longer than the 60 s socket timeout (retried, so never finishing). Large fetches of
# one partition at a time need a handful of scans per partition.
READ_FETCH_BYTES = 16 * 1024 * 1024


def read_topic(brokers, topic):
    """Every record of every partition of `topic`, beginning to end (partition EOF),
    one partition at a time (see READ_FETCH_BYTES)."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"checker-{os.getpid()}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "auto.offset.reset": "earliest",
                         "max.partition.fetch.bytes": READ_FETCH_BYTES,
                         "fetch.max.bytes": READ_FETCH_BYTES,
                         "receive.message.max.bytes": 4 * READ_FETCH_BYTES,
                         "socket.timeout.ms": 300_000})
    meta = consumer.list_topics(topic, timeout=30)
    if topic not in meta.topics or meta.topics[topic].error is not None:
        consumer.close()
        return []
    partitions = sorted(meta.topics[topic].partitions)
    total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in partitions)
    out = []
    last_progress = time.monotonic()
    next_report = last_progress + 60
    for partition in partitions:
        consumer.assign([TopicPartition(topic, partition, 0)])
        at_end = False
        while not at_end:
            now = time.monotonic()
            if now - last_progress > READ_STALL_S:
                raise RuntimeError(f"reading {topic}: nothing from partition {partition} for "
                                   f"{READ_STALL_S} s ({len(out)} of {total} records read)")
            if now > next_report:
                print(f"[checker] reading {topic}: {len(out)} of {total} records", file=sys.stderr,
                      flush=True)
                next_report = now + 60
            for msg in consumer.consume(num_messages=10000, timeout=1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end = at_end or msg.partition() == partition
                        continue
                    raise RuntimeError(f"reading {topic}: {err}")
                out.append(msg)
                last_progress = time.monotonic()
        consumer.unassign()
    consumer.close()
    return out


def headers(msg):
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}


# ------------------------------------------------------------------ the lake


def download_lake(lake, endpoint):
    bucket, _, prefix = lake[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    s3 = boto3.client("s3", endpoint_url=endpoint)
    local = tempfile.mkdtemp(prefix="chaos-lake-")
    files = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            rel = o["Key"][len(prefix) + 1:]
            if rel.startswith("_") or not rel.endswith(".parquet"):
                continue  # _playlake/: checkpoints and manifests, not data
            dest = os.path.join(local, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            s3.download_file(bucket, o["Key"], dest)
            files += 1
    return local, files


def read_table(local, table):
    """Rows of `table` as dicts (timestamps as epoch ms, partition values unescaped)."""
    root = os.path.join(local, table)
    if not os.path.isdir(root):
        return []
    part = ds.partitioning(pa.schema([(c, pa.string()) for c in PARTITIONS[table]]), flavor="hive")
    data = ds.dataset(root, format="parquet", partitioning=part).to_table()
    for i, field in enumerate(data.schema):
        if pa.types.is_timestamp(field.type):
            data = data.set_column(i, field.name, data.column(i).cast(pa.int64()))
    rows = data.to_pylist()
    for row in rows:
        for c in PARTITIONS[table]:
            v = row.get(c)
            if v == "__HIVE_DEFAULT_PARTITION__":
                row[c] = None
            elif v is not None:
                row[c] = unquote(v)
    return rows


def duckdb_count(local, table):
    if not os.path.isdir(os.path.join(local, table)):
        return 0
    return duckdb.sql(f"select count(*) from read_parquet('{local}/{table}/**/*.parquet', "
                      "hive_partitioning=true)").fetchall()[0][0]


# ------------------------------------------------------------------ SPEC section 3 in batch


def recompute(events, late, gap, window):
    """Sessions, viewer windows and daily stats of SPEC section 3 over `events`
    ({(uuid, event_id): (event_id, uuid, stream_id, user_id, type, t, start, end)}),
    leaving out of each operator the events late for it (`late`: operator -> ids)."""
    by_key = defaultdict(list)
    for ident, e in events.items():
        if ident not in late["sessions"]:
            by_key[(e[1], e[2])].append(e)
    sessions = {}
    for (uuid, stream_id), evs in by_key.items():
        evs.sort(key=lambda e: (e[5], e[0]))
        run = []
        for e in evs + [None]:
            if run and (e is None or run[-1][4] == "stop" or e[5] - run[-1][5] > gap):
                start, end = run[0][5], run[-1][5]
                watched = sum((Fraction(max(0.0, x[7] - x[6])) for x in run if x[4] != "seek"),
                              Fraction(0))
                sessions[(uuid, stream_id, start)] = {
                    "uuid": uuid, "stream_id": stream_id,
                    "user_id": next((x[3] for x in run if x[3] is not None), None),
                    "session_start": start, "session_end": end,
                    "position_start": run[0][6], "position_end": run[-1][7],
                    "watched_seconds": float(watched), "event_count": len(run),
                    "seek_count": sum(1 for x in run if x[4] == "seek"),
                    "ended_by": "stop" if run[-1][4] == "stop" else "gap", "dt": day(start)}
                run = []
            if e is not None:
                run.append(e)
    uuids = defaultdict(set)
    for ident, e in events.items():
        if ident not in late["viewers"] and e[4] != "stop":
            uuids[(e[2], e[5] - e[5] % window)].add(e[1])
    viewers = {}
    peaks = defaultdict(int)
    for (stream_id, ws), us in uuids.items():
        viewers[(stream_id, ws)] = {"stream_id": stream_id, "window_start": ws,
                                    "window_end": ws + window, "viewers": len(us), "dt": day(ws)}
        peaks[(day(ws), stream_id)] = max(peaks[(day(ws), stream_id)], len(us))
    acc = {}
    for ident, e in events.items():
        if ident in late["daily"]:
            continue
        a = acc.setdefault((day(e[5]), e[2]), [set(), set(), Fraction(0)])
        a[0].add(e[1])
        if e[3] is not None:
            a[1].add(e[3])
        if e[4] != "seek":
            a[2] += Fraction(max(0.0, e[7] - e[6]))
    daily = {(dt, s): {"dt": dt, "stream_id": s, "views": len(a[0]), "unique_users": len(a[1]),
                       "watched_seconds": float(a[2]), "peak_viewers": peaks.get((dt, s), 0)}
             for (dt, s), a in acc.items()}
    return sessions, viewers, daily


def compare(kind, want, rows, key, columns, m):
    """Row-for-row comparison of a lake table with the recomputation."""
    got = defaultdict(list)
    for row in rows:
        got[key(row)].append(row)
    for k, copies in got.items():
        if len(copies) > 1:
            m.add(f"{kind}: key in the lake more than once", {"key": k, "copies": len(copies)})
        if k not in want:
            m.add(f"{kind}: row not in the recomputation", {"key": k, "row": copies[0]})
            continue
        diff = {c: [copies[0].get(c), want[k][c]] for c in columns if copies[0].get(c) != want[k][c]}
        if diff:
            m.add(f"{kind}: row differs (lake, recomputed)", {"key": k, "diff": diff})
    for k, row in want.items():
        if k not in got:
            m.add(f"{kind}: row missing from the lake", {"key": k, "row": row})
    return len(rows)


# ------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--s3-endpoint", required=True)
    ap.add_argument("--dynamodb-truth", required=True)
    ap.add_argument("--produce-report", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--output")
    ap.add_argument("--session-gap-ms", type=int, default=30_000)
    ap.add_argument("--viewer-window-ms", type=int, default=30_000)
    ap.add_argument("--max-out-of-orderness-ms", type=int, default=10_000)
    args = ap.parse_args()
    gap, window = args.session_gap_ms, args.viewer_window_ms
    m = Mismatches()
    t0 = time.monotonic()
    now_ms = int(time.time() * 1000)
    events_topic = f"{args.prefix}.events"

    # 1. Inputs.
    records = read_topic(args.brokers, events_topic)
    events = {}  # (uuid, event_id) -> event tuple
    invalid = {}  # (partition, offset) -> reason code
    produced = from_ddb = copies = 0
    max_t = defaultdict(lambda: None)  # partition -> largest valid event_time
    ddb_events = {}
    for msg in records:
        if (msg.key() or b"").startswith(DDB_PREFIX):
            from_ddb += 1
        else:
            produced += 1
        try:
            e = parse(msg.value() or b"", now_ms)
        except Invalid as err:
            invalid[(msg.partition(), msg.offset())] = str(err).split(":")[0]
            if (msg.key() or b"").startswith(DDB_PREFIX):
                m.add("source: invalid record on the events topic",
                      {"partition": msg.partition(), "offset": msg.offset()})
            continue
        ident = (e[1], e[0])
        if ident in events:
            copies += 1
            if events[ident] != e:
                m.add("input: one (uuid, event_id) with two contents", {"id": ident})
        events[ident] = e
        if (msg.key() or b"").startswith(DDB_PREFIX):
            ddb_events[e[0]] = e
        p = msg.partition()
        if max_t[p] is None or e[5] > max_t[p]:
            max_t[p] = e[5]
    with open(args.produce_report, encoding="utf-8") as f:
        produce = json.load(f)
    if produced != produce["records_sent"]:
        m.add("input: records of playlake produce on the topic != records_sent",
              {"on_topic": produced, "records_sent": produce["records_sent"]})

    truth_valid, truth_invalid = {}, set()
    with open(args.dynamodb_truth, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["op"] != "put":
                continue
            if row["valid"]:
                truth_valid[row["event_id"]] = row
            else:
                truth_invalid.add(row["event_id"])
    for eid, row in truth_valid.items():
        e = ddb_events.get(eid)
        want = (eid, row["uuid"], row["stream_id"], row["user_id"], row["event_type"],
                row["event_time"], float(row["position_start"]), float(row["position_end"]))
        if e is None:
            m.add("source: DynamoDB item missing from the events topic", {"event_id": eid})
        elif e != want:
            m.add("source: mapped event differs from the item", {"item": want, "event": e})
    for eid in set(ddb_events) - set(truth_valid):
        m.add("source: event on the topic that no valid item made", {"event_id": eid})

    # Late events: (uuid, event_id) per operator, each claim checked against its watermark.
    late = {"sessions": set(), "viewers": set(), "daily": set()}
    late_records = read_topic(args.brokers, f"{args.prefix}.late")
    late_refinement = 0
    for msg in late_records:
        h = headers(msg)
        op, w = h.get("playlake.late.operator"), int(h.get("playlake.late.watermark", "0"))
        try:
            e = parse(msg.value() or b"", now_ms)
        except Invalid:
            m.add("late: record is not a valid event", {"offset": msg.offset()})
            continue
        ident = (e[1], e[0])
        if ident not in events or op not in late:
            m.add("late: unknown event or operator", {"id": ident, "operator": op})
            continue
        late[op].add(ident)
        t = e[5]
        source_p = int(h.get("playlake.source.partition", "-1"))
        if max_t.get(source_p) is not None and w > max_t[source_p] - args.max_out_of_orderness_ms:
            m.add("late: watermark beyond what its partition ever held",
                  {"id": ident, "watermark": w, "partition": source_p})
        if op == "viewers" and not t - t % window + window <= w:
            m.add("late: viewers claim not late at its watermark", {"id": ident, "t": t, "w": w})
        elif op == "daily" and not (t // DAY_MS + 1) * DAY_MS <= w:
            m.add("late: daily claim not late at its watermark", {"id": ident, "t": t, "w": w})
        elif op == "sessions" and not t + gap < w:
            late_refinement += 1

    # 2. The lake: events and errors, each record in exactly one place.
    local, files = download_lake(args.lake, args.s3_endpoint)
    tables = {t: read_table(local, t) for t in PARTITIONS}
    for t, rows in tables.items():
        n = duckdb_count(local, t)
        if n != len(rows):
            m.add("readers: DuckDB and pyarrow count different rows", {"table": t, "duckdb": n,
                                                                       "pyarrow": len(rows)})
    lake_events = Counter()
    for row in tables["events"]:
        ident = (row["uuid"], row["event_id"])
        lake_events[ident] += 1
        e = events.get(ident)
        if e is None:
            m.add("events: row that is no valid input event", {"id": ident})
            continue
        want = {"event_id": e[0], "uuid": e[1], "stream_id": e[2], "user_id": e[3],
                "event_type": e[4], "event_time": e[5], "position_start": e[6],
                "position_end": e[7], "dt": day(e[5]), "hour": f"{e[5] % DAY_MS // 3_600_000:02d}"}
        diff = {c: [row.get(c), v] for c, v in want.items() if row.get(c) != v}
        if diff:
            m.add("events: row differs from its input event", {"id": ident, "diff": diff})
    for ident, n in lake_events.items():
        if n > 1:
            m.add("events: event in the lake more than once", {"id": ident, "copies": n})
    for ident in events:
        if ident not in lake_events:
            m.add("events: valid event missing from the lake", {"id": ident})

    cdc_topic = f"{args.prefix}.cdc."
    errors_events = Counter()
    errors_ddb = Counter()
    for row in tables["errors"]:
        code = (row["reason"] or "").split(":")[0]
        if row["source_topic"] == events_topic:
            k = (row["source_partition"], row["source_offset"])
            errors_events[k] += 1
            if k not in invalid:
                m.add("errors: row for no invalid input record", {"coordinates": k, "reason": row["reason"]})
            elif invalid[k] != code:
                m.add("errors: reason code differs from the contract's",
                      {"coordinates": k, "lake": row["reason"], "contract": invalid[k]})
        elif (row["source_topic"] or "").startswith(cdc_topic):
            try:
                change = json.loads(row["raw"])
                eid = change["new_image"]["eid"]
            except (ValueError, KeyError, TypeError):
                m.add("errors: source row without a DynamoDB item", {"raw": row["raw"][:200]})
                continue
            errors_ddb[eid] += 1
            if eid not in truth_invalid:
                m.add("errors: dead-lettered DynamoDB item was valid", {"event_id": eid})
        else:
            m.add("errors: row from an unexpected topic", {"source_topic": row["source_topic"]})
    for k, n in errors_events.items():
        if n > 1:
            m.add("errors: record in the lake more than once", {"coordinates": k, "copies": n})
    for k in invalid:
        if k not in errors_events:
            m.add("errors: invalid record missing from the lake", {"coordinates": k})
    for eid in truth_invalid:
        if eid not in errors_ddb:
            m.add("errors: invalid DynamoDB item missing from the lake", {"event_id": eid})
    # Every invalid item is one put with its own eid, hence one change: its DLQ record
    # has one identity however often the source re-published it (DESIGN.md section 12,
    # "Playback mapping"), so a second row means the errors table lost exactly-once.
    for eid, n in errors_ddb.items():
        if n > 1:
            m.add("errors: a DynamoDB item's DLQ record is in the lake more than once",
                  {"event_id": eid, "copies": n})
    source_dlq_copies = sum(n - 1 for n in errors_ddb.values())

    # 3. Results equal the batch recomputation.
    sessions, viewers, daily = recompute(events, late, gap, window)
    rows_checked = len(tables["events"]) + len(tables["errors"])
    rows_checked += compare("sessions", sessions, tables["sessions"],
                            lambda r: (r["uuid"], r["stream_id"], r["session_start"]),
                            ["uuid", "stream_id", "user_id", "session_start", "session_end",
                             "position_start", "position_end", "watched_seconds", "event_count",
                             "seek_count", "ended_by", "dt"], m)
    rows_checked += compare("viewers", viewers, tables["viewers"],
                            lambda r: (r["stream_id"], r["window_start"]),
                            ["stream_id", "window_start", "window_end", "viewers", "dt"], m)
    rows_checked += compare("daily", daily, tables["daily"], lambda r: (r["dt"], r["stream_id"]),
                            ["dt", "stream_id", "views", "unique_users", "watched_seconds",
                             "peak_viewers"], m)

    # 4. Per stream counts.
    per_stream = defaultdict(Counter)
    for e in events.values():
        per_stream[e[2]]["events"] += 1
    for s in sessions.values():
        per_stream[s["stream_id"]]["sessions"] += 1
    for v in viewers.values():
        per_stream[v["stream_id"]]["viewer_windows"] += 1
    for d in daily.values():
        per_stream[d["stream_id"]]["daily"] += 1
    got_stream = defaultdict(Counter)
    for table, name in (("events", "events"), ("sessions", "sessions"),
                        ("viewers", "viewer_windows"), ("daily", "daily")):
        for row in tables[table]:
            got_stream[row["stream_id"]][name] += 1
    for s in set(per_stream) | set(got_stream):
        if per_stream[s] != got_stream[s]:
            m.add("per stream: counts differ (lake, recomputed)",
                  {"stream_id": s, "lake": dict(got_stream[s]), "recomputed": dict(per_stream[s])})

    result = {
        "records": len(records), "produced_records": produced, "source_records": from_ddb,
        "events": len(events), "redelivered_or_duplicate_copies": copies,
        "invalid": len(invalid), "dynamodb_items_valid": len(truth_valid),
        "dynamodb_items_invalid": len(truth_invalid), "source_dlq_copies": source_dlq_copies,
        "late": {op: len(ids) for op, ids in late.items()},
        "late_records": len(late_records), "late_sessions_by_refinement": late_refinement,
        "lake_files": files, "lake_rows": {t: len(rows) for t, rows in tables.items()},
        "recomputed": {"sessions": len(sessions), "viewers": len(viewers), "daily": len(daily)},
        "streams_checked": len(per_stream), "rows_checked": rows_checked,
        "mismatches": m.total(), "mismatch_kinds": dict(m.count),
        "mismatch_examples": dict(m.examples), "seconds": round(time.monotonic() - t0, 1),
    }
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    return 1 if m.total() else 0


if __name__ == "__main__":
    sys.exit(main())
