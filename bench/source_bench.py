"""The DynamoDB source's benchmark (`bench/run source`): records converted and produced
per core from GetRecords-shaped input, against AWS's ceiling of 1,000 records per
GetRecords call.

`playlake source dynamodb --until-caught-up` reads one open shard of N records from
the SCRIPTED DynamoDB Streams endpoint (connectors/dynamodb/tests/scripted_streams.py,
scenario "bench:N": seed 001-shaped MODIFY records with new and old images, about
600 bytes each, 1,000 per call from pages serialized before the run), unmarshals
each into a change event and publishes it to Tansu (acks=all), checkpointing each
batch in a lease table on moto. moto itself cannot serve this: its GetRecords is
far slower than the source and would be what is measured.

Two runs: the cdc topic only, and cdc plus the playback mapping to
`<prefix>.events`. The figures are the source process's own (GNU time): wall
seconds, CPU seconds (user + system), peak RSS; records per CPU second is the
per-core figure, and CPU milliseconds per 1,000 records is what one full GetRecords
call costs the source. Prints JSON on stdout, a table on stderr.

Usage: source_bench.py --playlake BIN --brokers B --moto URL [--records N] [--dir D]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import boto3

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "connectors", "dynamodb",
                      "tests", "scripted_streams.py")
MAPPING = """
[source.dynamodb.mapping]
stream_id = "PK"
uuid = "SK"
user_id = "user_id"
event_type = "event_type"
event_time = "event_time"
position_end = "position"
"""


def create_table(moto, name):
    db = boto3.client("dynamodb", endpoint_url=moto, region_name=os.environ.get("AWS_REGION", "us-east-1"))
    db.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                              {"AttributeName": "SK", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def run(args, endpoint, mode, stamp):
    table = f"bench-source-{stamp}-{mode}"
    prefix = f"benchsrc{stamp}{mode}"
    create_table(args.moto, table)
    config = os.path.join(args.dir, f"source-{mode}.toml")
    with open(config, "w") as f:
        f.write("[source.dynamodb]\npoll_interval_ms = 50\n")
        if mode == "mapped":
            f.write(MAPPING)
    timing = os.path.join(args.dir, f"source-{mode}.time")
    log = os.path.join(args.dir, f"source-{mode}.log")
    cmd = ["/usr/bin/time", "-f", "%M %e %U %S", "-o", timing,
           args.playlake, "--brokers", args.brokers, "--topic-prefix", prefix,
           "--metrics-addr", "127.0.0.1:0", "--config", config,
           "source", "dynamodb", "--table", table, "--endpoint-url", endpoint, "--until-caught-up"]
    env = dict(os.environ, RUST_LOG="warn", NO_COLOR="1")
    env.pop("PLAYLAKE_CONFIG", None)
    with open(log, "w") as err:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, env=env, check=False)
    if out.returncode != 0:
        sys.exit(f"source ({mode}) failed with {out.returncode}; see {log}")
    report = json.loads(out.stdout)
    if report["stream_records"] != args.records:
        sys.exit(f"source ({mode}) read {report['stream_records']} records, not {args.records}: {report}")
    rss_kib, wall, user, system = (float(v) for v in open(timing).read().split()[-4:])
    cpu = user + system
    return {
        "mode": mode,
        "records": args.records,
        "events": report["events"],
        "wall_seconds": wall,
        "cpu_seconds": round(cpu, 2),
        "records_per_second": round(args.records / wall),
        "records_per_cpu_second": round(args.records / cpu),
        "cpu_ms_per_1000_records": round(cpu * 1000 * 1000 / args.records, 2),
        "peak_rss_mib": round(rss_kib / 1024),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--playlake", required=True)
    p.add_argument("--brokers", required=True)
    p.add_argument("--moto", required=True)
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--dir", default=".")
    args = p.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    server = subprocess.Popen([sys.executable, SCRIPT, args.moto, f"bench:{args.records}"],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        endpoint = f"http://127.0.0.1:{port}"
        stamp = int(time.time())
        runs = [run(args, endpoint, mode, stamp) for mode in ("cdc", "mapped")]
    finally:
        server.kill()
        server.wait()
    print(json.dumps({"section": "source", "runs": runs}, indent=2))
    print("\nDynamoDB source, GetRecords-shaped input (1,000 records per call) -> Tansu", file=sys.stderr)
    print(f"{'outputs':<22}{'records':>9}{'wall s':>8}{'rec/s':>9}{'CPU s':>7}{'rec/CPU s':>11}"
          f"{'CPU ms/1000':>13}{'RSS MiB':>9}", file=sys.stderr)
    for r in runs:
        name = "cdc" if r["mode"] == "cdc" else "cdc + playback events"
        print(f"{name:<22}{r['records']:>9}{r['wall_seconds']:>8.1f}{r['records_per_second']:>9}"
              f"{r['cpu_seconds']:>7.1f}{r['records_per_cpu_second']:>11}{r['cpu_ms_per_1000_records']:>13}"
              f"{r['peak_rss_mib']:>9}", file=sys.stderr)


if __name__ == "__main__":
    main()
