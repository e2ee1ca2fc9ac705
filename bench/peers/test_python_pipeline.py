"""Self-check of the Python pipeline peer, no broker needed: random playback traffic
(out-of-order within 3 s, duplicates, stops, pauses, seeks, derived event ids, bad
records, several partitions, a day boundary) goes through `Pipeline` in consumer-sized
batches, and the lake it writes must equal a plain batch computation of SPEC section
3's definitions over the same events (no event is late at this jitter).

Usage: .venv/bin/python bench/peers/test_python_pipeline.py [SEED ...]
"""

import json
import os
import random
import sys
import tempfile
from collections import defaultdict

import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import python_pipeline as pp  # noqa: E402

GAP, WINDOW, OOO = 30_000, 30_000, 10_000


class Msg:
    def __init__(self, p, offset, value, eof=False):
        self.p, self.o, self.v, self.eof = p, offset, value, eof

    def error(self):
        if not self.eof:
            return None

        class E:
            def code(self):
                return pp.KafkaError._PARTITION_EOF

        return E()

    def partition(self):
        return self.p

    def offset(self):
        return self.o

    def value(self):
        return self.v

    def timestamp(self):
        return (1, 1_748_736_000_000)


def traffic(rng, n_players=60, parts=4):
    t0 = 1_748_822_400_000 - 15 * 60_000  # 15 min before a UTC midnight
    records = []  # (delivery time, partition, bytes, event or None)
    for i in range(n_players):
        uuid = f"u-{i:03d}"
        stream = f"s/{rng.randrange(5)}"
        user = None if rng.random() < 0.3 else f"user-{rng.randrange(30)}"
        t = t0 + rng.randrange(0, 20 * 60_000)
        pos = 0.0
        p = hash(uuid) % parts
        for k in range(rng.randrange(1, 120)):
            r = rng.random()
            kind = "start" if k == 0 else (
                "stop" if r < 0.03 else "seek" if r < 0.08 else "pause" if r < 0.1 else "heartbeat")
            ps = pos
            if kind == "seek":
                pos = round(rng.uniform(0, 3000), 3)
            elif kind in ("heartbeat", "stop"):
                pos = round(pos + rng.choice([5, 5, 5, 4.5, 0]), 3)
            ev = {"uuid": uuid, "stream_id": stream, "event_type": kind,
                  "event_time": t if rng.random() < 0.5 else
                  pp.datetime.fromtimestamp(t / 1000, tz=pp.timezone.utc).isoformat(),
                  "position_start": ps, "position_end": pos}
            if user is not None or rng.random() < 0.5:
                ev["user_id"] = user
            if rng.random() < 0.5:
                ev["event_id"] = f"e{k}"
            raw = json.dumps(ev).encode()
            delivery = t + rng.randrange(0, 3000)
            records.append((delivery, p, raw))
            if rng.random() < 0.05:
                records.append((t + rng.randrange(0, 3000), p, raw))  # duplicate
            if rng.random() < 0.01:
                records.append((delivery, p, raw[:-5]))  # bad
            # the next event: 5 s later, or a gap, or a new session after a stop
            t += rng.choice([5000] * 20 + [29_000, 31_000, 120_000]) + (
                rng.randrange(5_000, 60_000) if kind == "stop" else 0)
    records.sort(key=lambda r: r[0])
    return records, parts


def reference(records):
    events = {}
    for _, p, raw in records:
        try:
            e = pp.parse(raw, 2_000_000_000_000)
        except pp.Invalid:
            continue
        events.setdefault((e[1], e[0]), e)
    by_key = defaultdict(list)
    for e in events.values():
        by_key[(e[1], e[2])].append(e)
    sessions = []
    for (uuid, stream), evs in by_key.items():
        evs.sort(key=lambda e: (e[5], e[0]))
        run = None
        for e in evs:
            if run is None or run["stop"] or e[5] - run["end"] > GAP:
                if run:
                    sessions.append(run)
                run = {"uuid": uuid, "start": e[5], "user": None, "ps": e[6], "n": 0,
                       "seeks": 0, "watched": 0.0}
            run["end"] = e[5]
            run["stop"] = e[4] == "stop"
            run["user"] = run["user"] or e[3]
            run["pe"] = e[7]
            run["n"] += 1
            run["seeks"] += e[4] == "seek"
            run["watched"] += 0 if e[4] == "seek" else max(0.0, e[7] - e[6])
        sessions.append(run)
    windows = defaultdict(set)
    daily = defaultdict(lambda: [set(), set(), 0.0])
    for e in events.values():
        t = e[5]
        if e[4] != "stop":
            windows[(e[2], t - t % WINDOW)].add(e[1])
        d = daily[(t // pp.DAY_MS, e[2])]
        d[0].add(e[1])
        if e[3] is not None:
            d[1].add(e[3])
        d[2] += 0 if e[4] == "seek" else max(0.0, e[7] - e[6])
    peaks = defaultdict(int)
    for (s, ws), u in windows.items():
        peaks[(ws // pp.DAY_MS, s)] = max(peaks[(ws // pp.DAY_MS, s)], len(u))
    return (
        sorted((s["uuid"], s["start"], s["end"], s["n"], s["seeks"], s["stop"], s["user"],
                s["ps"], s["pe"], round(s["watched"], 6)) for s in sessions),
        sorted((s, ws, len(u)) for (s, ws), u in windows.items()),
        sorted((s, d, len(v[0]), len(v[1]), round(v[2], 6), peaks[(d, s)])
               for (d, s), v in daily.items()),
        len(events),
    )


def read(root, table):
    rows = []
    for d, _, names in os.walk(os.path.join(root, table)):
        for n in names:
            parts = dict(seg.split("=", 1) for seg in os.path.relpath(d, root).split("/")[1:])
            for r in pq.read_table(os.path.join(d, n)).to_pylist():
                rows.append({**parts, **r})
    return rows


def check(seed):
    rng = random.Random(seed)
    records, parts = traffic(rng)
    out = tempfile.mkdtemp(prefix="pp-test-")
    pipeline = pp.Pipeline(pp.Lake(out), "t.events", list(range(parts)), GAP, WINDOW, OOO)
    offsets = defaultdict(int)
    msgs = []
    for _, p, raw in records:
        msgs.append(Msg(p, offsets[p], raw))
        offsets[p] += 1
    msgs += [Msg(p, 0, None, eof=True) for p in range(parts)]
    for i in range(0, len(msgs), 997):
        pipeline.batch(msgs[i:i + 997], 2_000_000_000_000)
    streamed = dict(pipeline.lake.rows)  # emitted by watermarks, before the drain
    pipeline.drain()
    late = sum(v for k, v in pipeline.counts.items() if k.startswith("late"))
    assert late == 0, pipeline.counts
    ms = lambda ts: int(ts.timestamp() * 1000)  # noqa: E731
    got_sessions = sorted(
        (r["uuid"], ms(r["session_start"]), ms(r["session_end"]), r["event_count"],
         r["seek_count"], r["ended_by"] == "stop", r["user_id"], r["position_start"],
         r["position_end"], round(r["watched_seconds"], 6)) for r in read(out, "sessions"))
    got_viewers = sorted((pp_unescape(r["stream_id"]), ms(r["window_start"]), r["viewers"])
                         for r in read(out, "viewers"))
    got_daily = sorted((r["stream_id"], ms(pp.datetime.fromisoformat(r["dt"] + "T00:00:00+00:00"))
                        // pp.DAY_MS, r["views"], r["unique_users"],
                        round(r["watched_seconds"], 6), r["peak_viewers"])
                       for r in read(out, "daily"))
    want_s, want_v, want_d, n_events = reference(records)
    assert got_sessions == want_s, f"sessions differ ({len(got_sessions)} vs {len(want_s)})"
    assert got_viewers == want_v, f"viewers differ ({len(got_viewers)} vs {len(want_v)})"
    assert got_daily == want_d, f"daily differ ({len(got_daily)} vs {len(want_d)})"
    assert len(read(out, "events")) == n_events
    assert len(read(out, "errors")) == pipeline.counts["invalid"] > 0
    # Streaming, not batch: most sessions and windows were final before the end.
    assert streamed["sessions"] > 0.8 * len(want_s) and streamed["viewers"] > 0.5 * len(want_v), (streamed, len(want_s), len(want_v))
    days = {r[1] for r in want_d}
    print(f"seed {seed}: {len(records)} records, {n_events} events, {len(want_s)} sessions "
          f"({sum(r[5] for r in want_s)} stop-ended), {len(want_v)} viewer rows, "
          f"{len(want_d)} daily rows over {len(days)} days, "
          f"{pipeline.counts['duplicates']} duplicates, {pipeline.counts['invalid']} invalid: OK")


def pp_unescape(text):
    return text.replace("%2F", "/")


if __name__ == "__main__":
    for s in sys.argv[1:] or ["1", "2", "3"]:
        check(int(s))
