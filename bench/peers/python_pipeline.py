"""The hand-written Python peer of the end-to-end benchmark (confluent-kafka + pyarrow).

One process does what `playlake process` and `playlake sink` do together: it reads
`<prefix>.events` from the beginning to the end of every partition, validates each
record as SPEC section 2 says (invalid records are counted and archived in the
`errors` table), deduplicates by (uuid, event_id), computes SPEC section 3's sessions,
concurrent viewers, daily stats (UTC days) and resume points, and writes the lake of
SPEC section 5: Hive-partitioned, zstd Parquet for `sessions`, `viewers`, `daily`,
`events` (the raw valid input, deduplicated) and `errors`.

It is a *streaming* job, not a batch query over the whole input: results are computed
in event time and finalized by watermarks, the same way the processor does it, so its
memory holds only what is open, as a real pipeline's must:

* per Kafka partition, W = (largest event_time seen) - max_out_of_orderness;
  sessions (keyed by uuid, so one partition holds all of a session) are finalized by
  their partition's W; lateness is judged per operator against the partition's W
  (sessions: event_time + session_gap < W, or the event would change a session
  already emitted; viewers: window end <= W; daily: day end <= W), like playlake's
  source level does;
* viewer windows and days gather every partition, so they are finalized when the
  minimum W over the partitions still being read passes their end (a partition that
  reached its end stops holding it back, as an idle partition does in playlake);
* dedup ids are kept per partition and per day, and dropped when W makes a copy late
  for every operator;
* at the end of the input everything still open is final (playlake's drain mode).

Resume points are kept up to date and the changed ones are produced, per consumed
batch, to a compacted `<prefix>.python.resume` topic (playlake publishes them too).
Written to be fair: batched consume (10k records per call), output rows buffered,
one pyarrow write per file (a file rolls at 1M rows or at the end), no per-record
round trips; session state folds events once they cannot be reordered any more.

Usage: python_pipeline.py BROKERS TOPIC OUT_DIR GROUP_ID
       [--session-gap-ms 30000] [--viewer-window-ms 30000]
       [--max-out-of-orderness-ms 10000] [--no-resume-topic]
Prints one JSON object: records read, valid, invalid, duplicates, late, rows written
per table, seconds, records per second, peak RSS.
"""

import argparse
import hashlib
import heapq
import json
import math
import os
import re
import resource
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

DAY_MS = 86_400_000
MIN_EVENT_TIME_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_FUTURE_SKEW_MS = DAY_MS
NEG_INF = -(2**62)
POS_INF = 2**62
ROLL_ROWS = 1_000_000
FREEZE_BATCH = 64  # a session key folds its old events once this many are waiting
TYPES = {"start", "heartbeat", "pause", "seek", "stop"}
RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_MS = timedelta(milliseconds=1)
TS = pa.timestamp("ms", tz="UTC")

SCHEMAS = {
    "sessions": pa.schema(
        [
            ("uuid", pa.string()),
            ("user_id", pa.string()),
            ("session_start", TS),
            ("session_end", TS),
            ("position_start", pa.float64()),
            ("position_end", pa.float64()),
            ("watched_seconds", pa.float64()),
            ("event_count", pa.int64()),
            ("seek_count", pa.int64()),
            ("ended_by", pa.string()),
        ]
    ),
    "viewers": pa.schema(
        [("window_start", TS), ("window_end", TS), ("viewers", pa.int64())]
    ),
    "daily": pa.schema(
        [
            ("stream_id", pa.string()),
            ("views", pa.int64()),
            ("unique_users", pa.int64()),
            ("watched_seconds", pa.float64()),
            ("peak_viewers", pa.int64()),
        ]
    ),
    "events": pa.schema(
        [
            ("event_id", pa.string()),
            ("uuid", pa.string()),
            ("stream_id", pa.string()),
            ("user_id", pa.string()),
            ("event_type", pa.string()),
            ("event_time", TS),
            ("position_start", pa.float64()),
            ("position_end", pa.float64()),
        ]
    ),
    "errors": pa.schema(
        [
            ("source_topic", pa.string()),
            ("source_partition", pa.int64()),
            ("source_offset", pa.int64()),
            ("reason", pa.string()),
            ("raw", pa.string()),
        ]
    ),
}


class Invalid(Exception):
    """A record that goes to the DLQ; the message is the reason."""


# ---------------------------------------------------------------- parsing (SPEC 2)


def js_number(x):
    """A double formatted as JavaScript's String(x) (the derived event_id recipe)."""
    if x == 0:
        return "0"
    if x == int(x) and abs(x) < 2**53:
        return str(int(x))
    text = repr(x)
    if "e" not in text and not text.endswith(".0") and 1e-6 <= abs(x) < 1e21:
        return text
    # General case, from the shortest round-trip digits repr found.
    _, digits, exp = Decimal(repr(abs(x))).as_tuple()
    digits = list(digits)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exp += 1
    while len(digits) > 1 and digits[0] == 0:
        digits.pop(0)
    digits = "".join(map(str, digits))
    k = len(digits)
    n = k + exp  # value = 0.digits * 10^n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        rest = "." + digits[1:] if k > 1 else ""
        body = f"{digits[0]}{rest}e{'+' if n >= 1 else '-'}{abs(n - 1)}"
    return ("-" if x < 0 else "") + body


def _id(e, field, limit, required):
    v = e.get(field)
    if v is None:
        if required:
            raise Invalid(f"missing_field: {field}")
        return None
    if not isinstance(v, str):
        raise Invalid(f"wrong_type: {field}")
    if not v or (len(v) > limit // 4 and len(v.encode()) > limit):
        raise Invalid(f"id_length: {field}")
    return v


def _position(e, field):
    v = e.get(field)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Invalid(f"wrong_type: {field}")
    v = float(v)
    if not math.isfinite(v):
        raise Invalid(f"non_finite_position: {field}")
    if v < 0:
        raise Invalid(f"negative_position: {field}")
    return v + 0.0


def _event_time(v):
    if v is None:
        raise Invalid("missing_field: event_time")
    if isinstance(v, bool):
        raise Invalid("wrong_type: event_time")
    if isinstance(v, int):
        if not -(2**63) <= v < 2**63:
            raise Invalid("number_out_of_range: event_time")
        return v
    if isinstance(v, str):
        if not RFC3339.match(v):
            raise Invalid("invalid_timestamp: event_time")
        try:
            dt = datetime.fromisoformat(v.replace("z", "Z").replace("t", "T"))
        except ValueError:
            raise Invalid("invalid_timestamp: event_time") from None
        return (dt - EPOCH) // ONE_MS
    raise Invalid("wrong_type: event_time")


def parse(raw, now_ms):
    """One record value -> (event_id, uuid, stream_id, user_id, type, t_ms, start, end)."""
    try:
        e = json.loads(raw.decode())
    except UnicodeDecodeError:
        raise Invalid("invalid_utf8") from None
    except ValueError:
        raise Invalid("not_json") from None
    if not isinstance(e, dict):
        raise Invalid("not_object")
    uuid = _id(e, "uuid", 128, True)
    stream_id = _id(e, "stream_id", 256, True)
    event_id = _id(e, "event_id", 256, False)
    user_id = e.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise Invalid("wrong_type: user_id")
    kind = e.get("event_type")
    if kind is None:
        kind = "heartbeat"
    elif kind not in TYPES:
        raise Invalid("unknown_event_type")
    t = _event_time(e.get("event_time"))
    if t < MIN_EVENT_TIME_MS:
        raise Invalid("event_time_too_old")
    if t > now_ms + MAX_FUTURE_SKEW_MS:
        raise Invalid("event_time_in_future")
    start = _position(e, "position_start")
    end = _position(e, "position_end")
    if end is None:
        if kind != "start":
            raise Invalid("missing_field: position_end")
        start = end = start if start is not None else 0.0
    elif start is None:
        start = end
    if kind != "seek" and end < start:
        raise Invalid("position_order")
    if event_id is None:
        text = "\x1f".join((uuid, str(t), kind, js_number(start), js_number(end)))
        event_id = hashlib.sha256(text.encode()).hexdigest()[:32]
    return event_id, uuid, stream_id, user_id, kind, t, start, end


# ---------------------------------------------------------------- lake output


def hive(value):
    if value is None or value == "":
        return "__HIVE_DEFAULT_PARTITION__"
    if value in (".", ".."):
        return "%2E" * len(value)
    if value == "__HIVE_DEFAULT_PARTITION__":
        return "%5F" + value[1:]
    out = []
    for c in value:
        o = ord(c)
        if o < 0x20 or o == 0x7F or c in "\"#%'*/:=?[\\]^{}":
            out.append(f"%{o:02X}")
        else:
            out.append(c)
    return "".join(out)


def day_text(t):
    return datetime.fromtimestamp(t / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


class Lake:
    """Row buffers per (table, partition directory); one pyarrow write per file."""

    def __init__(self, root):
        self.root = root
        self.buffers = {}
        self.rows = {name: 0 for name in SCHEMAS}
        self.files = []
        self._days = {}

    def day(self, t):
        d = t // DAY_MS
        text = self._days.get(d)
        if text is None:
            text = self._days[d] = day_text(d * DAY_MS)
        return text

    def add(self, table, directory, row):
        key = (table, directory)
        rows = self.buffers.get(key)
        if rows is None:
            rows = self.buffers[key] = []
        rows.append(row)
        self.rows[table] += 1
        if len(rows) >= ROLL_ROWS:
            self.write(key)

    def write(self, key):
        rows = self.buffers.pop(key, None)
        if not rows:
            return
        table, directory = key
        schema = SCHEMAS[table]
        path = os.path.join(self.root, table, directory)
        os.makedirs(path, exist_ok=True)
        path = os.path.join(path, f"part-{len(self.files):06d}.parquet")
        arrays = [pa.array(c, type=f.type) for c, f in zip(zip(*rows), schema)]
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path, compression="zstd")
        self.files.append(os.path.getsize(path))

    def close(self):
        for key in list(self.buffers):
            self.write(key)


# ---------------------------------------------------------------- sessions


class KeyState:
    __slots__ = ("open", "recent", "guard", "wake")

    def __init__(self):
        # open: [start, end, end_id, ends_with_stop, user_id, pos_start, pos_end,
        #        watched, event_count, seek_count] of the frozen prefix of the run
        self.open = None
        self.recent = []  # (t, event_id, type, user_id, pos_start, pos_end), unsorted
        self.guard = None  # (end, end_id, by_stop) of the last emitted session
        self.wake = None


def run_first(ev):
    t, eid, kind, user, ps, pe = ev
    seek = kind == "seek"
    return [t, t, eid, kind == "stop", user, ps, pe,
            0.0 if seek else max(0.0, pe - ps), 1, 1 if seek else 0]


def run_push(run, ev):
    t, eid, kind, user, ps, pe = ev
    run[1] = t
    run[2] = eid
    run[3] = kind == "stop"
    if run[4] is None:
        run[4] = user
    run[6] = pe
    if kind == "seek":
        run[9] += 1
    else:
        run[7] += max(0.0, pe - ps)
    run[8] += 1


class Sessions:
    """The sessions of one Kafka partition (keyed by uuid: a session lives on one)."""

    def __init__(self, gap, emit):
        self.gap = gap
        self.keys = {}
        self.heap = []  # (wake, key): the key needs work once W > wake
        self.emit = emit

    def is_late(self, key, t, eid, w):
        if t + self.gap < w:
            return True
        st = self.keys.get(key)
        if st is None or st.guard is None:
            return False
        end, end_id, by_stop = st.guard
        if (t, eid) <= (end, end_id):
            return True
        return not by_stop and t - end <= self.gap

    def apply(self, key, ev):
        st = self.keys.get(key)
        if st is None:
            st = self.keys[key] = KeyState()
        st.recent.append(ev)
        # A lower bound of when this key's first session can be final.
        wake = ev[0] if ev[2] == "stop" else ev[0] + self.gap
        if len(st.recent) == FREEZE_BATCH:
            wake = min(wake, min(st.recent)[0] + self.gap)
        if st.wake is None or wake < st.wake:
            st.wake = wake
            heapq.heappush(self.heap, (wake, key))

    def advance(self, w):
        heap = self.heap
        while heap and heap[0][0] < w:
            wake, key = heapq.heappop(heap)
            st = self.keys.get(key)
            if st is None or st.wake != wake:
                continue
            self.settle(key, st, w)

    def settle(self, key, st, w):
        gap = self.gap
        recent = st.recent
        recent.sort()
        # 1. Freeze events no on-time event can come before any more.
        i = 0
        while i < len(recent) and recent[i][0] + gap < w:
            ev = recent[i]
            run = st.open
            if run is not None and not run[3] and ev[0] - run[1] <= gap:
                run_push(run, ev)
            else:
                if run is not None:
                    self.finish(key, st, run)
                st.open = run_first(ev)
            i += 1
        if i:
            del recent[:i]
        # 2. Emit the first run while it is final.
        while True:
            run = list(st.open) if st.open is not None else None
            used = 0
            for ev in recent:
                if run is None:
                    run = run_first(ev)
                elif run[3] or ev[0] - run[1] > gap:
                    break
                else:
                    run_push(run, ev)
                used += 1
            if run is None:
                break
            final_after = run[1] if run[3] else run[1] + gap
            if not w > final_after:
                break
            del recent[:used]
            st.open = None
            self.finish(key, st, run)
        # 3. Next wake: emit, forget the guard, or freeze (only once enough events are
        #    waiting: freezing just bounds memory, and a settle per event costs).
        wakes = []
        if len(recent) >= FREEZE_BATCH:
            wakes.append(recent[0][0] + gap)
        if st.open is not None or recent:
            run = list(st.open) if st.open is not None else run_first(recent[0])
            for ev in recent[0 if st.open is not None else 1:]:
                if run[3] or ev[0] - run[1] > gap:
                    break
                run[1], run[3] = ev[0], ev[2] == "stop"
            wakes.append(run[1] if run[3] else run[1] + gap)
        if st.guard is not None:
            end, _, by_stop = st.guard
            reach = (end if by_stop else end + gap) + gap
            if reach < w:
                st.guard = None
            else:
                wakes.append(reach)
        if not wakes:
            del self.keys[key]
            return
        st.wake = max(min(wakes), w)
        heapq.heappush(self.heap, (st.wake, key))

    def finish(self, key, st, run):
        st.guard = (run[1], run[2], run[3])
        self.emit(key, run)

    def drain(self):
        for key, st in list(self.keys.items()):
            st.recent.sort()
            run = st.open
            for ev in st.recent:
                if run is not None and not run[3] and ev[0] - run[1] <= self.gap:
                    run_push(run, ev)
                else:
                    if run is not None:
                        self.emit(key, run)
                    run = run_first(ev)
            if run is not None:
                self.emit(key, run)
        self.keys.clear()
        self.heap.clear()


# ---------------------------------------------------------------- the pipeline


class PartitionState:
    __slots__ = ("max_t", "w", "sessions", "dedup", "done")

    def __init__(self, sessions):
        self.max_t = None
        self.w = NEG_INF
        self.sessions = sessions
        self.dedup = {}  # expire_at -> set of (uuid, event_id)
        self.done = False


class Pipeline:
    """Everything between the consumer and the lake; fed one consumed batch at a time."""

    def __init__(self, lake, topic, partitions, gap, window, ooo):
        self.lake, self.topic = lake, topic
        self.gap, self.window, self.ooo = gap, window, ooo
        self.counts = {"records": 0, "valid": 0, "invalid": 0, "duplicates": 0,
                       "bytes": 0, "late_sessions": 0, "late_viewers": 0,
                       "late_daily": 0}
        self.positions = {}
        self.parts = {p: PartitionState(Sessions(gap, self.emit_session)) for p in partitions}
        self.remaining = set(partitions)
        self.windows = {}  # window_start -> {stream_id: set(uuid)}
        self.days = {}  # day index -> {stream_id: [set(uuid), set(user_id), watched]}
        self.peaks = {}  # (day index, stream_id) -> max viewers of its final windows
        self.resume = {}  # (user_id, stream_id) -> (t, event_id, position_end, uuid)
        self.resume_changed = set()
        self.final_w = NEG_INF

    def emit_session(self, key, run):
        uuid, stream_id = key
        start, end, _, stop, user, ps, pe, watched, n, seeks = run
        lake = self.lake
        lake.add("sessions", f"dt={lake.day(start)}/stream_id={hive(stream_id)}",
                 (uuid, user, start, end, ps, pe, watched, n, seeks, "stop" if stop else "gap"))

    def finalize(self, w_min):
        """Viewer windows and days final at the minimum watermark of the partitions."""
        if w_min <= self.final_w:
            return
        self.final_w = w_min
        lake, window, windows, days, peaks = self.lake, self.window, self.windows, self.days, self.peaks
        for ws in sorted(s for s in windows if s + window <= w_min):
            for stream_id, uuids in windows.pop(ws).items():
                lake.add("viewers", f"dt={lake.day(ws)}/stream_id={hive(stream_id)}",
                         (ws, ws + window, len(uuids)))
                pk = (ws // DAY_MS, stream_id)
                if len(uuids) > peaks.get(pk, 0):
                    peaks[pk] = len(uuids)
        for d in sorted(d for d in days if (d + 1) * DAY_MS <= w_min):
            for stream_id, (uuids, users, watched) in days.pop(d).items():
                lake.add("daily", f"dt={lake.day(d * DAY_MS)}",
                         (stream_id, len(uuids), len(users), watched,
                          peaks.pop((d, stream_id), 0)))

    def batch(self, msgs, now_ms):
        """One consumed batch (confluent-kafka messages, partition EOFs included)."""
        counts, lake, parts, positions = self.counts, self.lake, self.parts, self.positions
        topic, gap, window, ooo = self.topic, self.gap, self.window, self.ooo
        windows, days, resume, resume_changed = self.windows, self.days, self.resume, self.resume_changed
        for msg in msgs:
            err = msg.error()
            p = msg.partition()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if p in self.remaining:
                        self.remaining.discard(p)
                        parts[p].done = True
                    continue
                raise RuntimeError(f"consume: {err}")
            ps = parts[p]
            positions[p] = msg.offset() + 1
            value = msg.value() or b""
            counts["records"] += 1
            counts["bytes"] += len(value)
            try:
                event_id, uuid, stream_id, user_id, kind, t, start, end = parse(value, now_ms)
            except Invalid as e:
                counts["invalid"] += 1
                ts = msg.timestamp()[1]
                lake.add("errors", f"dt={lake.day(ts if ts > 0 else now_ms)}",
                         (topic, p, msg.offset(), str(e), value.decode("utf-8", "replace")))
                continue
            counts["valid"] += 1
            w = ps.w
            # Dedup, per partition and day (dropped once a copy would be late everywhere).
            d = t // DAY_MS
            day_end = (d + 1) * DAY_MS
            expire_at = max(day_end + gap, -(-day_end // window) * window)
            if expire_at > w:
                ids = ps.dedup.get(expire_at)
                if ids is None:
                    ids = ps.dedup[expire_at] = set()
                ident = (uuid, event_id)
                if ident in ids:
                    counts["duplicates"] += 1
                    continue
                ids.add(ident)
            lake.add("events", f"dt={lake.day(t)}/hour={(t % DAY_MS) // 3_600_000:02d}",
                     (event_id, uuid, stream_id, user_id, kind, t, start, end))
            key = (uuid, stream_id)
            sessions = ps.sessions
            if sessions.is_late(key, t, event_id, w):
                counts["late_sessions"] += 1
            else:
                sessions.apply(key, (t, event_id, kind, user_id, start, end))
            ws = t - t % window
            if ws + window <= w:
                counts["late_viewers"] += 1
            elif kind != "stop":
                streams = windows.get(ws)
                if streams is None:
                    streams = windows[ws] = {}
                uuids = streams.get(stream_id)
                if uuids is None:
                    uuids = streams[stream_id] = set()
                uuids.add(uuid)
            if day_end <= w:
                counts["late_daily"] += 1
            else:
                streams = days.get(d)
                if streams is None:
                    streams = days[d] = {}
                acc = streams.get(stream_id)
                if acc is None:
                    acc = streams[stream_id] = [set(), set(), 0.0]
                acc[0].add(uuid)
                if user_id is not None:
                    acc[1].add(user_id)
                if kind != "seek" and end > start:
                    acc[2] += end - start
            if user_id is not None:
                rk = (user_id, stream_id)
                cur = resume.get(rk)
                if cur is None or (t, event_id) > (cur[0], cur[1]):
                    resume[rk] = (t, event_id, end, uuid)
                    resume_changed.add(rk)
            if ps.max_t is None or t > ps.max_t:
                ps.max_t = t
                ps.w = t - ooo
            if sessions.heap and sessions.heap[0][0] < ps.w:
                sessions.advance(ps.w)
        # Once per batch: results final at the minimum watermark of the partitions
        # still being read, and the dedup days no copy can reach any more.
        live = [s.w for s in parts.values() if not s.done]
        self.finalize(min(live) if live else NEG_INF)
        for s in parts.values():
            for at in [at for at in s.dedup if at <= s.w]:
                del s.dedup[at]

    def drain(self):
        """End of input: everything still open is final."""
        for s in self.parts.values():
            s.sessions.drain()
        self.finalize(POS_INF)
        self.lake.close()

    def take_resume(self):
        """The resume points changed since the last call: (key bytes, value bytes)."""
        out = []
        for k in self.resume_changed:
            t, _, pe, uuid = self.resume[k]
            value = json.dumps({"user_id": k[0], "stream_id": k[1], "position_end": pe,
                                "event_time": t, "uuid": uuid})
            out.append((f"{k[0]}/{k[1]}".encode(), value.encode()))
        self.resume_changed.clear()
        return out


def consume_only(consumer, topic, started):
    meta = consumer.list_topics(topic, timeout=30)
    partitions = sorted(meta.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    remaining, records, size = set(partitions), 0, 0
    while remaining:
        for msg in consumer.consume(num_messages=10000, timeout=1.0):
            err = msg.error()
            if err is None:
                records += 1
                size += len(msg.value() or b"")
            elif err.code() == KafkaError._PARTITION_EOF:
                remaining.discard(msg.partition())
            else:
                raise RuntimeError(f"consume: {err}")
    consumer.close()
    seconds = time.perf_counter() - started
    print(json.dumps({"records": records, "bytes": size, "seconds": seconds,
                      "records_per_second": records / seconds}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("brokers")
    ap.add_argument("topic")
    ap.add_argument("out")
    ap.add_argument("group")
    ap.add_argument("--session-gap-ms", type=int, default=30_000)
    ap.add_argument("--viewer-window-ms", type=int, default=30_000)
    ap.add_argument("--max-out-of-orderness-ms", type=int, default=10_000)
    ap.add_argument("--no-resume-topic", action="store_true")
    ap.add_argument("--consume-only", action="store_true",
                    help="only read the topic to its end (the broker's ceiling)")
    args = ap.parse_args()
    topic = args.topic
    resume_topic = topic.rsplit(".", 1)[0] + ".python.resume"

    started = time.perf_counter()
    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "fetch.max.bytes": 52428800,
        }
    )
    if args.consume_only:
        return consume_only(consumer, topic, started)
    producer = None
    if not args.no_resume_topic:
        admin = AdminClient({"bootstrap.servers": args.brokers})
        futures = admin.create_topics(
            [NewTopic(resume_topic, 6, 1, config={"cleanup.policy": "compact"})]
        )
        for f in futures.values():
            try:
                f.result(30)
            except Exception as e:  # already exists is fine
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise
        producer = Producer({"bootstrap.servers": args.brokers, "linger.ms": 50})

    def publish(points):
        for key, value in points:
            while True:
                try:
                    producer.produce(resume_topic, value, key=key)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)

    meta = consumer.list_topics(topic, timeout=30)
    partitions = sorted(meta.topics[topic].partitions)
    # The end is detected from fetch results (partition EOF), not ListOffsets, which
    # Tansu under-reports (SPEC section 10); the topic is not written to meanwhile.
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    pipeline = Pipeline(Lake(args.out), topic, partitions, args.session_gap_ms,
                        args.viewer_window_ms, args.max_out_of_orderness_ms)
    while pipeline.remaining:
        pipeline.batch(consumer.consume(num_messages=10000, timeout=1.0), int(time.time() * 1000))
        points = pipeline.take_resume()
        if producer is not None:
            publish(points)
    pipeline.drain()
    if producer is not None:
        publish(pipeline.take_resume())
        if producer.flush(60):
            raise RuntimeError("resume points not delivered")
    if pipeline.positions:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in pipeline.positions.items()],
            asynchronous=False,
        )
    consumer.close()
    seconds = time.perf_counter() - started
    counts = pipeline.counts
    print(json.dumps({
        **counts,
        "late": counts["late_sessions"] + counts["late_viewers"] + counts["late_daily"],
        "rows": pipeline.lake.rows,
        "files": len(pipeline.lake.files),
        "total_file_bytes": sum(pipeline.lake.files),
        "resume_points": len(pipeline.resume),
        "seconds": seconds,
        "records_per_second": counts["records"] / seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    sys.exit(main())
