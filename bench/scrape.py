"""Metrics scrape latency of `playlake run` under load (issue 6: "a metrics scrape
under load stays fast"), next to the same process idle.

    python bench/scrape.py PLAYLAKE_BIN BROKERS WORKDIR [options] > scrape.json

1. Creates the pipeline's topics with --partitions partitions each (`playlake
   topics`; default 8), the repartition topic included. Before 2026-12-02, with 32
   partitions and 2,000 records/s (--players 10000), the live processor fell
   behind on Tansu (one session saw it read ~340 records/s, mostly waiting), so its
   viewer windows stopped completing. The cause was ours: every poll sent one
   watermark announcement per (source partition, repartition partition), 1,024
   records a poll at 32 x 32 (~1,500 records/s, 40% of the repartition topic), and
   the loop handled at most 2,000 records a poll while each poll waited for about
   three acknowledged sends whose cost on Tansu grows with the partitions they
   touch (Tansu, which also serves the sink's fetches of 5 topics x 32 partitions,
   was near one full core). The merge side's lag grew without bound (44-55k
   records after 40-60 s) and the source side kept up only while a poll took under
   a second. Announcements are now one record per repartition partition a round,
   at most once a second, and a poll takes up to 20,000 records: at 32 partitions
   both sides keep up (lag ~0; DESIGN.md section 8). The defaults stay the 600
   records/s load of the README's figures.
2. Starts `playlake run` (processor + sink, file:// lake under WORKDIR) with
   `metrics_top_streams` at its maximum (1000), waits for /readyz 200.
3. Idle baseline: --idle-scrapes sequential GETs of /metrics, nothing flowing.
4. Load: a producer thread (confluent-kafka) sends live heartbeats (event time =
   now, one per player every 5 s: 600 records/s by default) of --players players
   spread over --streams streams for --load-seconds, with 10 s viewer windows,
   while /metrics is scraped every --interval seconds. Once the first viewer window
   completes, the per-stream gauge holds the top 1000 streams: the "full" phase
   figures are over the scrapes that saw all 1000 per-stream series.
5. SIGTERM, and the exit status and time are recorded.

Every scrape is timed from connect to the last body byte (HTTP/1.0, the server
closes). Prints one JSON object: for idle, load and full, the scrape count, p50,
p99, max and mean latency in ms, the response size and the series count; plus the
producer's rate, the records the processor read and playlake's CPU use.
"""

import argparse
import heapq
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

from confluent_kafka import Producer


def log(msg):
    print(f"scrape: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(addr, path, timeout=30):
    """(status, body bytes, seconds) of one HTTP/1.0 GET."""
    host, port = addr.split(":")
    t0 = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    took = time.perf_counter() - t0
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, body, took


def scrape(addr):
    status, body, took = get(addr, "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    series = 0
    stream_series = 0
    records_in = 0.0
    for line in body.decode("utf-8", "replace").splitlines():
        if not line or line.startswith("#"):
            continue
        series += 1
        if line.startswith("playlake_stream_concurrent_viewers{"):
            stream_series += 1
        elif line.startswith("playlake_records_in_total{") and 'stage="process"' in line:
            records_in += float(line.rsplit(" ", 1)[1])
    return {
        "ms": took * 1000.0,
        "bytes": len(body),
        "series": series,
        "stream_series": stream_series,
        "process_records_in": records_in,
    }


def summary(samples):
    if not samples:
        return {"scrapes": 0}
    ms = sorted(s["ms"] for s in samples)

    def pct(p):
        return ms[min(len(ms) - 1, int(round(p / 100.0 * (len(ms) - 1))))]

    return {
        "scrapes": len(ms),
        "p50_ms": round(pct(50), 2),
        "p99_ms": round(pct(99), 2),
        "max_ms": round(ms[-1], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "bytes_max": max(s["bytes"] for s in samples),
        "bytes_median": int(statistics.median(s["bytes"] for s in samples)),
        "series_max": max(s["series"] for s in samples),
        "stream_series_max": max(s["stream_series"] for s in samples),
    }


def cpu_seconds(pid):
    """utime + stime of the process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Load(threading.Thread):
    """Players sending a heartbeat every 5 s of wall clock, event time = now."""

    def __init__(self, brokers, topic, players, streams, seconds):
        super().__init__(daemon=True)
        self.producer = Producer({
            "bootstrap.servers": brokers,
            "linger.ms": 20,
            "enable.idempotence": True,
        })
        self.topic = topic
        self.players = players
        self.streams = streams
        self.seconds = seconds
        self.sent = 0
        self.elapsed = 0.0
        self.error = None

    def run(self):
        try:
            self._run()
        except Exception as e:  # reported by the main thread
            self.error = e

    def _run(self):
        start = time.time()
        # Player i beats first at start + (i % 5000) ms, then every 5 s.
        due = [(start + (i % 5000) / 1000.0, i) for i in range(self.players)]
        heapq.heapify(due)
        beats = [0] * self.players
        while True:
            now = time.time()
            if now - start >= self.seconds:
                break
            while due[0][0] <= now:
                at, i = heapq.heappop(due)
                beats[i] += 1
                position = 5.0 * beats[i]
                event = {
                    "uuid": f"player-{i}",
                    "stream_id": f"stream-{i % self.streams:05d}",
                    "user_id": f"user-{i}",
                    "event_type": "heartbeat",
                    "event_time": int(now * 1000),
                    "position_start": position - 5.0,
                    "position_end": position,
                    "event_id": f"player-{i}-{beats[i]}",
                }
                key = event["uuid"].encode()
                while True:
                    try:
                        self.producer.produce(self.topic, json.dumps(event).encode(), key)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
                self.sent += 1
                heapq.heappush(due, (at + 5.0, i))
            self.producer.poll(0)
            time.sleep(0.05)
        self.producer.flush(60)
        self.elapsed = time.time() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("playlake")
    ap.add_argument("brokers")
    ap.add_argument("workdir")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--players", type=int, default=3000)
    ap.add_argument("--streams", type=int, default=1500)
    ap.add_argument("--top-streams", type=int, default=1000)
    ap.add_argument("--load-seconds", type=int, default=120)
    ap.add_argument("--idle-scrapes", type=int, default=300)
    ap.add_argument("--interval", type=float, default=0.1)
    a = ap.parse_args()

    os.makedirs(a.workdir, exist_ok=True)
    prefix = f"scrape{int(time.time())}"
    config = os.path.join(a.workdir, "playlake.toml")
    with open(config, "w") as f:
        f.write(
            f"metrics_top_streams = {a.top_streams}\n\n"
            # 10 s viewer windows: the per-stream gauge fills sooner than with 30 s.
            "[processor]\nviewer_window_ms = 10000\n\n"
            f"[process]\ngroup_id = \"{prefix}-process\"\n"
            f"repartition_partitions = {a.partitions}\n\n"
            f"[sink]\ngroup_id = \"{prefix}-sink\"\nflush_interval_seconds = 30\n\n"
            "[run]\nstages = [\"process\", \"sink\"]\nshutdown_deadline_seconds = 60\n"
        )
    common = ["--config", config, "--brokers", a.brokers, "--topic-prefix", prefix]
    log(f"creating the topics of {prefix} with {a.partitions} partitions each")
    subprocess.run([a.playlake, *common, "topics", "--partitions", str(a.partitions)],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=open(os.path.join(a.workdir, "topics.log"), "w"))

    addr = f"127.0.0.1:{free_port()}"
    run_log = os.path.join(a.workdir, "run.log")
    lake = "file://" + os.path.abspath(os.path.join(a.workdir, "lake"))
    env = dict(os.environ, RUST_LOG="info")
    env.pop("PLAYLAKE_CONFIG", None)
    run = subprocess.Popen(
        [a.playlake, *common, "--lake", lake, "--metrics-addr", addr, "run"],
        stdout=open(os.path.join(a.workdir, "run.out"), "w"),
        stderr=open(run_log, "w"), env=env)
    try:
        deadline = time.time() + 180
        while True:
            if run.poll() is not None:
                raise RuntimeError(f"playlake run exited with {run.returncode}; see {run_log}")
            try:
                if get(addr, "/readyz", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"/readyz not 200 within 180 s; see {run_log}")
            time.sleep(0.2)

        log(f"idle: {a.idle_scrapes} scrapes")
        idle = []
        for _ in range(a.idle_scrapes):
            idle.append(scrape(addr))
            time.sleep(0.01)

        log(f"load: {a.players} players on {a.streams} streams for {a.load_seconds} s, "
            f"a scrape every {a.interval} s")
        load = Load(a.brokers, f"{prefix}.events", a.players, a.streams, a.load_seconds)
        cpu0, t0 = cpu_seconds(run.pid), time.time()
        load.start()
        busy = []
        while load.is_alive():
            busy.append(scrape(addr))
            if run.poll() is not None:
                raise RuntimeError(f"playlake run exited with {run.returncode}; see {run_log}")
            time.sleep(a.interval)
        cpu1, t1 = cpu_seconds(run.pid), time.time()
        if load.error:
            raise load.error
        full = [s for s in busy if s["stream_series"] >= a.top_streams]
        log(f"load done: {load.sent} records sent, {len(busy)} scrapes, {len(full)} "
            f"with all {a.top_streams} per-stream series")

        run.send_signal(signal.SIGTERM)
        ts = time.time()
        code = run.wait(timeout=120)
        stop_seconds = time.time() - ts
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()

    result = {
        "prefix": prefix,
        "partitions": a.partitions,
        "players": a.players,
        "streams": a.streams,
        "metrics_top_streams": a.top_streams,
        "load_seconds": a.load_seconds,
        "records_sent": load.sent,
        "records_per_second": round(load.sent / load.elapsed, 1) if load.elapsed else 0,
        "process_records_in": busy[-1]["process_records_in"] if busy else 0,
        "playlake_cpu_share_during_load": round((cpu1 - cpu0) / (t1 - t0), 3),
        "idle": summary(idle),
        "load": summary(busy),
        "full": summary(full),
        "sigterm_exit_code": code,
        "sigterm_exit_seconds": round(stop_seconds, 2),
    }
    print(json.dumps(result, indent=2))
    print(f"scrape: {result['records_per_second']:.0f} records/s for {a.load_seconds} s, "
          f"{a.partitions} partitions, {a.streams} streams (top {a.top_streams})",
          file=sys.stderr)
    for k in ("idle", "load", "full"):
        s = result[k]
        if s.get("scrapes"):
            print(f"  {k:5} {s['scrapes']:5} scrapes: p50 {s['p50_ms']} ms, "
                  f"p99 {s['p99_ms']} ms, max {s['max_ms']} ms; "
                  f"{s['bytes_max']} bytes, {s['series_max']} series", file=sys.stderr)
    if len(full) == 0:
        log(f"the per-stream gauge never reached {a.top_streams} series; see {run_log}")
        return 1
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
