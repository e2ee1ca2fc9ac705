"""The end-to-end chaos run (issue 8, item 1): the whole pipeline on a broker and
object store of its own, SIGKILLed, cut off from S3 and with its broker restarted at
random moments, then drained and checked by an independent checker (checker.py).

What runs (every stage a separate `playlake` process, as in production):

    harness (boto3) --PutItem/DeleteItem--> DynamoDB table (moto A) --Streams-->
        `playlake source dynamodb` (playback mapping) --+
    `playlake produce` (seeded generator) --------------+--> <prefix>.events (Tansu, sqlite)
        `playlake process` --> sessions/viewers/daily/resume/late/dlq topics
        `playlake sink` --> s3://<bucket>/lake (moto B)

* Tansu runs with durable `sqlite://` storage in the run's directory, so it can be
  killed and restarted on the same port without losing topics (the shared test
  stack's broker is left alone: other tests use it).
* moto A serves DynamoDB and DynamoDB Streams (the source's leases and checkpoints
  live there); moto B serves only S3 (the lake, and the checkpoints of the processor
  and the sink). The S3 outage is SIGSTOP of moto B: connections hang, requests time
  out, nothing is lost, and SIGCONT ends the outage. DynamoDB stays up meanwhile.
* Event times: `playlake produce` generates from a fixed start (2025-06-01) forward.
  The harness follows the events topic and writes each DynamoDB item with an event
  time 2 s ahead of the largest produced event time seen so far, so the mapped events
  fall inside the processor's out-of-orderness bound instead of making the generator's
  events late (lateness is judged per input partition, which both producers share).
  Whatever still ends up late is in `<prefix>.late`; the checker accounts for it.
* The processor runs with a long idle timeout: a partition that goes idle on the wall
  clock lets windows close without it, and a partial that arrives after that is
  counted as already final, silently (DESIGN.md section 8, "the price of idleness").
  That loss depends on timing, not on crashes, and no checker could tell it from a bug.

Chaos (seeded; the seed is printed and `--seed` repeats a schedule): SIGKILL of the
source, the processor and the sink at random moments (each restarted after a random
pause), one S3 outage, one broker restart (SIGKILL of Tansu, then a start on the same
port). A stage that exits by itself is restarted too and reported (`unplanned_exits`).

End: once `produce` and the DynamoDB writer are done, every stage is stopped with
SIGTERM and finished in batch mode: `source dynamodb --until-caught-up`,
`process --drain`, `sink --drain` (each must exit 0 within its deadline). Then
checker.py proves exactly-once and equality with a batch recomputation.

Usage: chaos.py --playlake PATH --tansu PATH [--profile ci|long] [--seed N]
                [--workdir DIR] [--keep]
Prints progress on stderr and, last on stdout, one line `CHAOS_RESULT {json}` with the
figures. Exit status: 0 when the checker found 0 mismatches, 1 on mismatches,
2 when the run itself failed (a stage did not finish, the stack did not start, ...).
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench", "peers"))
sys.path.insert(0, os.path.join(REPO, "tests", "stack"))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402

import probe  # noqa: E402  tests/stack/probe.py: Kafka and HTTP readiness probes
from python_pipeline import Invalid, parse  # noqa: E402  SPEC section 2 in Python

# Settings of each profile. `events`: valid events `playlake produce` generates;
# `rate`: its records per second; `viewers`: its concurrent players (many players
# make event time advance slowly, about rate * 6 / viewers event-seconds per second);
# `ddb_rate`: DynamoDB writes per second; `kills`: SIGKILLs per stage;
# `outage_s`: the S3 outage; `chaos_s`: the window in which chaos happens.
PROFILES = {
    "ci": dict(events=24_000, rate=320, viewers=5_000, ddb_rate=12, ddb_viewers=40,
               partitions=4, kills=3, outage_s=10, chaos_s=75, drain_timeout_s=240,
               checkpoint_ms=1_000, flush_s=5, session_timeout_ms=3_000),
    "long": dict(events=400_000, rate=1_000, viewers=20_000, ddb_rate=20, ddb_viewers=120,
                 partitions=8, kills=12, outage_s=30, chaos_s=420, drain_timeout_s=900,
                 checkpoint_ms=1_000, flush_s=10, session_timeout_ms=3_000),
}



def fast_group(session_timeout_ms):
    """librdkafka settings that let a group notice a SIGKILLed member within the
    profile's session timeout instead of the default 45 s. 3 s suits the usual rates; a
    broker saturated by a 25,000 records/s load on 2 cores answers heartbeats later
    than that, and members then lose their partitions in a loop (--session-timeout-ms)."""
    return ["--kafka-option", f"session.timeout.ms={session_timeout_ms}",
            "--kafka-option", f"heartbeat.interval.ms={max(100, session_timeout_ms // 10)}"]


DDB_PREFIX = "ddb-"
# playlake_generator::DEFAULT_START_TIME_MS: the first event time of `playlake produce`.
GENERATOR_START_MS = 1_748_736_000_000  # uuids (and Kafka keys) of the events the source maps
STAGES = ("source", "process", "sink")


def log(msg):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class RunFailed(Exception):
    """The run could not complete (not a checker mismatch)."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, condition, timeout, interval=0.2, alive=None):
    """Polls `condition` until true; raises RunFailed after `timeout` seconds or when
    `alive()` says the process it waits for died."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if alive is not None and not alive():
            raise RunFailed(f"{what}: the process exited first")
        if time.monotonic() > deadline:
            raise RunFailed(f"{what}: not within {timeout} s")
        time.sleep(interval)


# ------------------------------------------------------------------ services


class Service:
    """A child process with its output in `<dir>/<name>.log` (appended across restarts)."""

    def __init__(self, name, argv, workdir, env=None, cwd=None):
        self.name, self.argv, self.workdir = name, argv, workdir
        self.env, self.cwd = env, cwd
        self.proc = None
        self.starts = 0

    @property
    def log_path(self):
        return os.path.join(self.workdir, f"{self.name}.log")

    def start(self, extra_argv=(), stdout=None):
        log_file = open(self.log_path, "ab")
        log_file.write(f"\n===== start {self.starts} {time.strftime('%H:%M:%S')} "
                       f"{' '.join(self.argv + list(extra_argv))}\n".encode())
        log_file.flush()
        env = dict(os.environ)
        for k in [k for k in env if k.startswith("PLAYLAKE_")]:
            del env[k]
        env.update(self.env or {})
        self.proc = subprocess.Popen(self.argv + list(extra_argv), cwd=self.cwd, env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=stdout if stdout is not None else log_file,
                                     stderr=log_file)
        log_file.close()
        self.starts += 1
        return self.proc

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def kill(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=30):
        """SIGTERM, then SIGKILL after `timeout`; returns True when it exited by itself."""
        if not self.running():
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            return False

    def reports(self):
        """The JSON reports the runs printed (a run prints one when it exits cleanly)."""
        out, block = [], None
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.rstrip("\n") == "{":
                        block = [line]
                    elif block is not None:
                        block.append(line)
                        if line.rstrip("\n") == "}":
                            try:
                                out.append(json.loads("".join(block)))
                            except ValueError:
                                pass
                            block = None
        except OSError:
            pass
        return out

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


class Stack:
    """Tansu (sqlite) and two moto servers of this run."""

    def __init__(self, workdir, python, tansu_bin):
        self.workdir = workdir
        self.kafka_port = free_port()
        self.brokers = f"127.0.0.1:{self.kafka_port}"
        tansu_dir = os.path.join(workdir, "tansu")
        os.makedirs(tansu_dir, exist_ok=True)
        listener = f"tcp://{self.brokers}"
        # Tansu reads these from the environment and a .env file: only flags count.
        tansu_env = {"RUST_LOG": "warn"}
        for k in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL",
                  "STORAGE_ENGINE", "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            os.environ.pop(k, None)
        # Tansu 0.6.0 opens sqlite://FILE relative to its working directory.
        self.tansu = Service("tansu", [tansu_bin, "broker", "--cluster-id", "playlake-chaos",
                                       "--listener-url", listener,
                                       "--advertised-listener-url", listener,
                                       "--storage-engine", "sqlite://tansu.db"],
                             workdir, env=tansu_env, cwd=tansu_dir)
        self.ddb_port, self.s3_port = free_port(), free_port()
        self.ddb_endpoint = f"http://127.0.0.1:{self.ddb_port}"
        self.s3_endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.moto_ddb = Service("moto-ddb", [python, "-m", "moto.server", "-H", "127.0.0.1",
                                             "-p", str(self.ddb_port)], workdir)
        self.moto_s3 = Service("moto-s3", [python, "-m", "moto.server", "-H", "127.0.0.1",
                                           "-p", str(self.s3_port)], workdir)

    def start(self):
        self.moto_ddb.start()
        self.moto_s3.start()
        self.start_tansu()
        for svc, endpoint in ((self.moto_ddb, self.ddb_endpoint), (self.moto_s3, self.s3_endpoint)):
            wait_until(f"{svc.name} answers", lambda e=endpoint: _quiet(probe.http, e + "/"),
                       60, alive=svc.running)

    def start_tansu(self):
        self.tansu.start()
        wait_until("tansu answers", lambda: _quiet(probe.kafka, self.brokers), 60,
                   alive=self.tansu.running)

    def restart_broker(self):
        self.tansu.kill()
        self.start_tansu()

    def stop(self):
        self.moto_s3.signal(signal.SIGCONT)
        for svc in (self.tansu, self.moto_ddb, self.moto_s3):
            svc.kill()


def _quiet(f, *args):
    try:
        return f(*args)
    except Exception:  # noqa: BLE001  a probe that fails means "not yet"
        return False


# ------------------------------------------------------------------ the DynamoDB writer


class ProducedTime:
    """Follows `<prefix>.events` and keeps the largest event time `playlake produce`
    wrote so far (records of the DynamoDB source, keyed `ddb-...`, are skipped)."""

    def __init__(self, brokers, topic, partitions):
        self.max_t = None
        self.records = 0
        self.ddb_ids = set()  # event ids of the source's records seen so far
        self._stop = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": brokers, "group.id": "chaos-follower",
                                   "enable.auto.commit": False, "log_level": 2})
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        now_ms = int(time.time() * 1000)
        while not self._stop.is_set():
            for msg in self._consumer.consume(num_messages=5000, timeout=0.5):
                if msg.error() is not None:
                    continue
                if (msg.key() or b"").startswith(DDB_PREFIX.encode()):
                    try:
                        self.ddb_ids.add(parse(msg.value() or b"", now_ms)[0])
                    except Invalid:
                        pass
                    continue
                self.records += 1
                try:
                    t = parse(msg.value() or b"", now_ms)[5]
                except Invalid:
                    continue
                if self.max_t is None or t > self.max_t:
                    self.max_t = t
        self._consumer.close()

    def stop(self):
        self._stop.set()
        self.thread.join(30)


class DynamoWriter:
    """Writes playback items (seed 001's table shape plus the other playback fields)
    to the DynamoDB table and records each change in `truth` (JSON lines) for the
    checker: valid heartbeats, starts, pauses, seeks and stops; invalid items
    (negative or missing playhead: the source must dead-letter them); deletions
    (REMOVE: not playback events)."""

    def __init__(self, table, endpoint, truth_path, follower, rng, rate, viewers, before=None):
        self.table = table
        self.db = boto3.client("dynamodb", endpoint_url=endpoint,
                               config=Config(retries={"max_attempts": 10, "mode": "standard"}))
        self.truth = open(truth_path, "w", encoding="utf-8")
        self.follower, self.rng, self.rate = follower, rng, rate
        # `before`: (first event time, step ms, items): all items ahead of the
        # generator's traffic in event time, written before it starts.
        self.before = before
        self.valid_ids = set()
        streams = [f"{DDB_PREFIX}live-{i}" for i in range(3)] + [f"{DDB_PREFIX}vod-{i}" for i in range(5)]
        self.viewers = []
        for i in range(viewers):
            user = f"{DDB_PREFIX}user-{i % (viewers // 2 or 1)}" if i % 3 else None
            self.viewers.append({"uuid": f"{DDB_PREFIX}{i:04d}-{rng.randrange(1 << 32):08x}",
                                 "stream": rng.choice(streams), "user": user,
                                 "t": None, "pos": 0.0, "n": 0, "playing": False})
        self.writes = self.invalid = self.deletes = 0
        self._stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self._stop.set()
        self.thread.join(120)
        self.truth.close()

    def _run(self):
        try:
            interval = 1.0 / self.rate
            next_at = time.monotonic()
            while not self._stop.is_set():
                if self.before is not None and self.writes + self.deletes >= self.before[2]:
                    return
                if self.before is not None or self.follower.max_t is not None:
                    self._write_one()
                next_at += interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        except Exception as e:  # noqa: BLE001  reported by the harness
            self.error = repr(e)
            log(f"DynamoDB writer failed: {e!r}")

    def _write_one(self):
        rng = self.rng
        v = rng.choice(self.viewers)
        if self.before is not None:
            base = self.before[0] + (self.writes + self.deletes) * self.before[1]
        else:
            base = self.follower.max_t + 2_000
        t = base if v["t"] is None else max(base, v["t"] + 1)
        v["n"] += 1
        eid = f"{v['uuid']}-{v['n']}"
        key = {"PK": {"S": v["stream"]}, "SK": {"S": v["uuid"]}}
        roll = rng.random()
        if v["playing"] and roll < 0.02:
            self.db.delete_item(TableName=self.table, Key=key)
            self._record({"op": "delete", "uuid": v["uuid"], "stream_id": v["stream"]})
            self.deletes += 1
            v["playing"] = False
            return
        pstart = v["pos"]
        playing = True
        if not v["playing"]:
            kind, pend = "start", v["pos"]
        elif roll < 0.05:
            kind = "seek"
            pend = round(rng.uniform(0, 3600), 3)
        elif roll < 0.08:
            kind = "stop"
            pend = round(pstart + (t - v["t"]) / 1000, 3)
            playing = False
        elif roll < 0.11:
            kind = "pause"
            pend = pstart
        else:
            kind = "heartbeat"
            pend = round(pstart + (t - v["t"]) / 1000, 3)
        item = dict(key)
        item.update({"eid": {"S": eid}, "ts": {"N": str(t)}, "etype": {"S": kind},
                     "pstart": {"N": repr(pstart)}, "expDate": {"N": "1893456000"}})
        invalid = roll > 0.98
        if invalid:
            # An unmappable item: a negative playhead (the mapping dead-letters it).
            item["pend"] = {"N": "-1"}
        else:
            item["pend"] = {"N": repr(pend)}
        if v["user"] is not None:
            item["user"] = {"S": v["user"]}
        self.db.put_item(TableName=self.table, Item=item)
        self.writes += 1
        if invalid:
            self.invalid += 1
            self._record({"op": "put", "valid": False, "event_id": eid, "uuid": v["uuid"],
                          "stream_id": v["stream"]})
            return
        v["t"], v["pos"], v["playing"] = t, pend, playing
        self.valid_ids.add(eid)
        self._record({"op": "put", "valid": True, "event_id": eid, "uuid": v["uuid"],
                      "stream_id": v["stream"], "user_id": v["user"], "event_type": kind,
                      "event_time": t, "position_start": pstart, "position_end": pend})

    def _record(self, row):
        self.truth.write(json.dumps(row) + "\n")
        self.truth.flush()


# ------------------------------------------------------------------ the run


class Run:
    def __init__(self, args):
        self.args = args
        self.profile = dict(PROFILES[args.profile])
        self.profile["broker_restarts"] = 1
        if args.calm:
            self.profile.update(kills=0, outage_s=0, broker_restarts=0)
        for k in ("events", "kills", "outage_s", "chaos_s", "rate", "session_timeout_ms"):
            if getattr(args, k, None) is not None:
                self.profile[k] = getattr(args, k)
        self.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
        self.rng = random.Random(self.seed)
        self.workdir = args.workdir or tempfile.mkdtemp(prefix="playlake-chaos-")
        os.makedirs(self.workdir, exist_ok=True)
        tag = f"{os.getpid()}-{int(time.time() * 1000) % 100_000_000}"
        self.prefix = f"chaos-{tag}"
        self.table = f"chaos-playback-{tag}"
        self.bucket = f"chaos-{tag}"
        self.lake = f"s3://{self.bucket}/lake"
        self.stack = Stack(self.workdir, sys.executable, args.tansu)
        self.figures = {"seed": self.seed, "profile": args.profile,
                        "dynamodb_items": "before produce" if args.dynamodb_before_produce
                        else "interleaved with produce",
                        "kills": {s: 0 for s in STAGES}, "unplanned_exits": {s: 0 for s in STAGES},
                        "outage_seconds": 0.0, "broker_restarts": 0, "timeline": []}
        self.stages = {}
        self.producer = None
        self.started = None

    # -- helpers

    def event(self, what):
        at = round(time.monotonic() - self.started, 1)
        self.figures["timeline"].append([at, what])
        log(f"t+{at:.1f}s {what}")

    def playlake(self, name, argv, s3=True, ddb=False):
        env = {"NO_COLOR": "1", "RUST_LOG": "info", "AWS_REGION": "us-east-1",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}
        if s3:
            env["AWS_ENDPOINT_URL"] = self.stack.s3_endpoint
        if ddb:
            env["AWS_ENDPOINT_URL"] = self.stack.ddb_endpoint
        common = ["--brokers", self.stack.brokers, "--topic-prefix", self.prefix,
                  "--lake", self.lake, "--metrics-addr", "127.0.0.1:0"]
        return Service(name, [self.args.playlake] + argv + common, self.workdir, env=env)

    def s3(self):
        return boto3.client("s3", endpoint_url=self.stack.s3_endpoint,
                            config=Config(connect_timeout=5, read_timeout=10,
                                          retries={"max_attempts": 2}))

    def checkpoint_count(self, stage):
        """Checkpoint objects of `stage` in the lake (a measure of progress)."""
        try:
            s3 = self.s3()
            n = 0
            for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=f"lake/_playlake/checkpoints/{stage}/"):
                n += len(page.get("Contents", []))
            return n
        except Exception:  # noqa: BLE001  during the outage: no news
            return 0

    # -- setup

    def setup(self):
        p = self.profile
        log(f"seed {self.seed} (repeat with --seed {self.seed}); profile {self.args.profile}: {p}")
        log(f"work directory {self.workdir}")
        self.stack.start()
        log(f"Tansu {self.stack.brokers} (sqlite), DynamoDB {self.stack.ddb_endpoint}, "
            f"S3 {self.stack.s3_endpoint}")
        self.s3().create_bucket(Bucket=self.bucket)
        db = boto3.client("dynamodb", endpoint_url=self.stack.ddb_endpoint)
        db.create_table(TableName=self.table, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                                              {"AttributeName": "SK", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"},
                                   {"AttributeName": "SK", "KeyType": "RANGE"}],
                        StreamSpecification={"StreamEnabled": True,
                                             "StreamViewType": "NEW_AND_OLD_IMAGES"})
        topics = self.playlake("topics", ["topics", "--partitions", str(p["partitions"])])
        topics.start()
        if topics.proc.wait(120) != 0:
            raise RunFailed(f"playlake topics failed:\n{topics.tail()}")
        config = os.path.join(self.workdir, "source.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(
                "[source.dynamodb.mapping]\n"
                'stream_id = "PK"\nuuid = "SK"\nuser_id = "user"\nevent_type = "etype"\n'
                'event_time = "ts"\nposition_start = "pstart"\nposition_end = "pend"\n'
                'event_id = "eid"\n')
        self.stages["source"] = self.playlake("source", [
            "source", "dynamodb", "--config", config, "--table", self.table,
            "--endpoint-url", self.stack.ddb_endpoint, "--worker-id", "chaos-source",
            "--poll-interval-ms", "200", "--shard-sync-interval-ms", "2000",
            "--lease-duration-ms", "5000"], s3=False, ddb=True)
        self.stages["process"] = self.playlake("process", [
            "process", "--group", f"{self.prefix}-process",
            "--checkpoint-interval-ms", str(p["checkpoint_ms"]),
            "--idle-timeout-ms", "3600000"] + fast_group(p["session_timeout_ms"]))
        self.stages["sink"] = self.playlake("sink", [
            "sink", "--group", f"{self.prefix}-sink",
            "--flush-interval-seconds", str(p["flush_s"])] + fast_group(p["session_timeout_ms"]))

    # -- chaos

    def schedule(self):
        """(at seconds, action, argument) of the whole chaos window, sorted."""
        p, rng = self.profile, self.rng
        window = p["chaos_s"]
        plan = []
        for stage in STAGES:
            for _ in range(p["kills"]):
                plan.append((rng.uniform(5, window - 5), "kill", stage))
        # The outage and the broker restart in different halves, so each is visible.
        outage_first = rng.random() < 0.5
        half = window / 2
        if p["outage_s"] > 0:
            lo = 5 if outage_first else half
            plan.append((rng.uniform(lo, max(lo, lo + half - 5 - p["outage_s"])), "outage",
                         p["outage_s"]))
        if p["broker_restarts"] > 0:
            lo = half if outage_first else 5
            plan.append((rng.uniform(lo, lo + half - 10), "broker", None))
        return sorted(plan, key=lambda x: x[0])

    def supervise(self):
        """Restarts stages that exited by themselves (a supervisor would)."""
        for name, stage in self.stages.items():
            if stage.proc is not None and stage.proc.poll() is not None and not stage.stopped:
                code = stage.proc.returncode
                self.figures["unplanned_exits"][name] += 1
                self.event(f"{name} exited by itself with {code}; restarting. Last lines:\n"
                           f"{stage.tail(15)}")
                stage.start()

    def start_producer(self):
        with open(self.produce_out, "wb") as out:
            self.producer.start(stdout=out)
        if self.started is not None:
            self.event("playlake produce started")

    def producer_due(self):
        """--dynamodb-before-produce: produce starts once the writer is done and the
        source has published every valid item it wrote."""
        return (self.producer.proc is None and not self.writer.thread.is_alive()
                and self.writer.valid_ids <= self.follower.ddb_ids)

    def chaos(self):
        p = self.profile
        for stage in self.stages.values():
            stage.stopped = False
            stage.start()
        self.producer = self.playlake("produce", [
            "produce", "--events", str(p["events"]), "--viewers", str(p["viewers"]),
            "--rate-per-second", str(p["rate"]), "--seed", str(self.seed % 1_000_000)])
        self.produce_out = os.path.join(self.workdir, "produce.json")
        self.follower = ProducedTime(self.stack.brokers, f"{self.prefix}.events", p["partitions"])
        before = None
        if self.args.dynamodb_before_produce:
            items = p["ddb_rate"] * 25
            step = 100
            before = (GENERATOR_START_MS - 15_000 - items * step, step, items)
        self.writer = DynamoWriter(self.table, self.stack.ddb_endpoint,
                                   os.path.join(self.workdir, "dynamodb-truth.jsonl"),
                                   self.follower, random.Random(self.seed ^ 0xDD),
                                   p["ddb_rate"], p["ddb_viewers"], before=before)
        self.writer.start()
        if before is None:
            self.start_producer()
        # The pipeline is alive once the processor and the sink have checkpointed.
        wait_until("first checkpoints of process and sink",
                   lambda: self.checkpoint_count("process") > 0 and self.checkpoint_count("sink") > 0,
                   180, interval=1)
        self.started = time.monotonic()
        self.event("pipeline running; chaos starts")
        plan = self.schedule()
        restarts = []  # (at, stage)
        outage_end = None
        while plan or restarts or outage_end is not None or self.producer.proc is None:
            now = time.monotonic() - self.started
            if self.producer_due():
                self.start_producer()
            if self.producer.proc is None and now > 240:
                raise RunFailed("the source did not publish the DynamoDB items within 240 s: "
                                f"{len(self.writer.valid_ids - self.follower.ddb_ids)} missing")
            if outage_end is not None and now >= outage_end:
                self.stack.moto_s3.signal(signal.SIGCONT)
                self.event("S3 outage ends (SIGCONT)")
                outage_end = None
            for item in [r for r in restarts if r[0] <= now]:
                restarts.remove(item)
                self.stages[item[1]].start()
                self.stages[item[1]].stopped = False
                self.event(f"{item[1]} restarted")
            while plan and plan[0][0] <= now:
                _, action, arg = plan.pop(0)
                if action == "kill":
                    stage = self.stages[arg]
                    if not stage.running():
                        # Still down from an earlier kill: kill it again after its restart.
                        plan.append((now + 1.5, action, arg))
                        plan.sort(key=lambda x: x[0])
                        continue
                    stage.stopped = True
                    stage.kill()
                    self.figures["kills"][arg] += 1
                    pause = self.rng.uniform(0.2, 3.0)
                    restarts.append((now + pause, arg))
                    self.event(f"SIGKILL {arg} (kill {self.figures['kills'][arg]}); "
                               f"restart in {pause:.1f}s")
                elif action == "outage":
                    self.stack.moto_s3.signal(signal.SIGSTOP)
                    outage_end = now + arg
                    self.figures["outage_seconds"] += arg
                    self.event(f"S3 outage for {arg}s (SIGSTOP moto-s3)")
                elif action == "broker":
                    self.event("broker restart: SIGKILL Tansu")
                    self.stack.restart_broker()
                    self.figures["broker_restarts"] += 1
                    self.event("broker back (same port, sqlite storage)")
            self.supervise()
            time.sleep(0.1)
        self.event("chaos schedule done")

    # -- end

    def finish(self):
        p = self.profile
        # The producer: must finish by itself (its rate and event count bound its time).
        deadline = max(120, p["events"] / p["rate"] * 2)
        give_up = time.monotonic() + deadline
        while self.producer.running():
            self.supervise()
            if time.monotonic() > give_up:
                raise RunFailed(f"playlake produce did not finish within {deadline:.0f} s")
            time.sleep(0.5)
        if self.producer.proc.returncode != 0:
            raise RunFailed(f"playlake produce failed ({self.producer.proc.returncode}):\n"
                            f"{self.producer.tail()}")
        with open(self.produce_out, encoding="utf-8") as f:
            self.figures["produce"] = json.load(f)
        self.event(f"produce done: {self.figures['produce']}")
        self.writer.stop()
        self.follower.stop()
        if self.writer.error:
            raise RunFailed(f"DynamoDB writer failed: {self.writer.error}")
        self.figures["dynamodb"] = {"puts": self.writer.writes, "invalid": self.writer.invalid,
                                    "deletes": self.writer.deletes}
        self.event(f"DynamoDB writer done: {self.figures['dynamodb']}")
        # Batch mode, stage by stage, so each reads an input that no longer grows.
        for name, extra in (("source", ["--until-caught-up"]), ("process", ["--drain"]),
                            ("sink", ["--drain"])):
            stage = self.stages[name]
            stage.stopped = True
            if not stage.stop(60):
                self.event(f"{name} ignored SIGTERM for 60 s; killed")
            t0 = time.monotonic()
            stage.start(extra_argv=extra)
            try:
                code = stage.proc.wait(p["drain_timeout_s"])
            except subprocess.TimeoutExpired:
                stage.kill()
                raise RunFailed(f"{name} {' '.join(extra)} did not finish within "
                                f"{p['drain_timeout_s']} s:\n{stage.tail(60)}") from None
            if code != 0:
                raise RunFailed(f"{name} {' '.join(extra)} failed with {code}:\n{stage.tail(60)}")
            self.event(f"{name} {' '.join(extra)} finished in {time.monotonic() - t0:.1f}s")

    def check(self):
        out = os.path.join(self.workdir, "checker.json")
        argv = [sys.executable, os.path.join(HERE, "checker.py"),
                "--brokers", self.stack.brokers, "--prefix", self.prefix,
                "--lake", self.lake, "--s3-endpoint", self.stack.s3_endpoint,
                "--dynamodb-truth", os.path.join(self.workdir, "dynamodb-truth.jsonl"),
                "--produce-report", self.produce_out, "--partitions", str(self.profile["partitions"]),
                "--output", out]
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1")
        t0 = time.monotonic()
        code = subprocess.call(argv, env=env)
        if not os.path.exists(out):
            raise RunFailed(f"checker exited with {code} and wrote no result")
        with open(out, encoding="utf-8") as f:
            result = json.load(f)
        self.event(f"checker finished in {time.monotonic() - t0:.1f}s (exit {code})")
        return code, result

    def main(self):
        t0 = time.monotonic()
        status = 2
        try:
            self.setup()
            self.chaos()
            self.finish()
            code, result = self.check()
            self.figures["check"] = result
            # A diagnostic from our own code (not part of the proof): records the
            # processor's runs that exited cleanly say they read. Without kills it
            # must equal the records on the topic; killed runs print nothing.
            self.figures["process_records_in_reported"] = sum(
                r.get("records_in", 0) for r in self.stages["process"].reports())
            if self.profile["kills"] == 0 and self.profile["broker_restarts"] == 0:
                want = result.get("records")
                got = self.figures["process_records_in_reported"]
                if got != want:
                    log(f"DIAGNOSTIC: the processor reports reading {got} records, the "
                        f"events topic holds {want}: it skipped {want - got}")
            status = 0 if code == 0 and result.get("mismatches") == 0 else 1
        except RunFailed as e:
            self.figures["error"] = str(e)
            log(f"RUN FAILED: {e}")
        except Exception as e:  # noqa: BLE001  reported like a failed run, with the trace
            import traceback
            traceback.print_exc()
            self.figures["error"] = repr(e)
        finally:
            for svc in list(self.stages.values()) + [self.producer]:
                if svc is not None:
                    svc.kill()
            self.stack.stop()
            self.figures["seconds"] = round(time.monotonic() - t0, 1)
        self.report(status)
        if status == 0 and not self.args.keep and not self.args.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            log(f"logs and data kept in {self.workdir}")
        return status

    def report(self, status):
        f = self.figures
        check = f.get("check", {})
        lines = [
            f"seed:               {f['seed']} (profile {f['profile']})",
            f"events:             {check.get('events', '-')} distinct valid events "
            f"({check.get('records', '-')} input records, {check.get('invalid', '-')} invalid, "
            f"{check.get('late', '-')} late)",
            "kills survived:     " + ", ".join(f"{s} {n}" for s, n in f["kills"].items()),
            f"unplanned exits:    " + ", ".join(f"{s} {n}" for s, n in f["unplanned_exits"].items()),
            f"outage seconds:     {f['outage_seconds']}",
            f"broker restarts:    {f['broker_restarts']}",
            f"rows checked:       {check.get('rows_checked', '-')}",
            f"mismatches:         {check.get('mismatches', '-')}",
            f"seconds:            {f['seconds']}",
        ]
        if "error" in f:
            lines.append(f"run failed:         {f['error'][:2000]}")
        print("\n".join(lines), file=sys.stderr)
        summary = {k: v for k, v in f.items() if k != "timeline"}
        summary["status"] = status
        print("CHAOS_RESULT " + json.dumps(summary), flush=True)
        # The same figures as `key=value` words, for the Rust test (no JSON parser there).
        figures = {"status": status, "failed": int("error" in f),
                   "events": check.get("events", -1), "rows_checked": check.get("rows_checked", -1),
                   "mismatches": check.get("mismatches", -1),
                   "outage_seconds": int(f["outage_seconds"]),
                   "broker_restarts": f["broker_restarts"]}
        figures.update({f"kills_{s}": n for s, n in f["kills"].items()})
        print("CHAOS_FIGURES " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--playlake", required=True)
    ap.add_argument("--tansu", required=True)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="ci")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--kills", type=int, help="SIGKILLs per stage (overrides the profile)")
    ap.add_argument("--outage-s", dest="outage_s", type=int, help="S3 outage seconds")
    ap.add_argument("--chaos-s", dest="chaos_s", type=int, help="chaos window seconds")
    ap.add_argument("--events", type=int, help="valid events of playlake produce")
    ap.add_argument("--rate", type=int, help="records per second of playlake produce")
    ap.add_argument("--session-timeout-ms", dest="session_timeout_ms", type=int,
                    help="consumer group session timeout of the process and sink stages "
                         "(default 3000: kills are noticed fast)")
    ap.add_argument("--dynamodb-before-produce", action="store_true",
                    help="write the DynamoDB items first (event times before the generator's) "
                         "and start playlake produce once the source has published them all, "
                         "instead of interleaving the two")
    ap.add_argument("--calm", action="store_true",
                    help="no kills, no outage, no broker restart: checks the harness and checker")
    args = ap.parse_args()
    # moto accepts any credentials; boto3 and playlake need some.
    for k, v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                 ("AWS_REGION", "us-east-1"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(k, v)
    return Run(args).main()


if __name__ == "__main__":
    sys.exit(main())
