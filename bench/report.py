"""Prints the figures of one bench/run section side by side with its peer.

Usage: report.py SECTION FILE...   (the JSON files the section wrote)

For the processor section it also checks that playlake and DuckDB computed the same
results (integer checksums equal, sums of seconds equal to 1e-9 relative) and exits 1
when they differ: a fast wrong answer is not a benchmark result.
"""

import json
import math
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.0f}k"
    return f"{x:.0f}"


def table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for n, r in enumerate(rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def same(a, b):
    mismatches = []
    for k, va in a.items():
        vb = b.get(k)
        if isinstance(va, float) or isinstance(vb, float):
            ok = vb is not None and math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-6)
        else:
            ok = va == vb
        if not ok:
            mismatches.append(f"{k}: playlake {va} vs peer {vb}")
    return mismatches


def processor(ours_path, duck1_path, duckn_path):
    ours, d1, dn = load(ours_path), load(duck1_path), load(duckn_path)
    rows = [("engine", "threads", "events", "seconds", "events/s", "playlake / peer")]
    ours_rate = ours["events_per_second"]
    rows.append(("playlake (streaming, parses JSON)", 1, ours["records"],
                 f"{ours['seconds']:.2f}", rate(ours_rate), "1.00x"))
    for d in (d1, dn):
        rows.append((f"DuckDB SQL (batch, Parquet input)", d["threads"], d["events"],
                     f"{d['seconds']:.2f}", rate(d["events_per_second"]),
                     f"{ours_rate / d['events_per_second']:.2f}x"))
    table(rows)
    print(f"\npeak memory {ours['peak_rss_bytes'] / 2**20:.0f} MiB, "
          f"{ours['max_open_sessions']} open sessions at most, "
          f"{ours['bytes_per_open_session']:.0f} bytes of state per open session; "
          f"valid {ours['valid']}, DLQ {ours['invalid']}, duplicates {ours['duplicates']}, "
          f"late {ours['late']}")
    print(f"playlake used {ours['cpu_seconds']:.2f} CPU s for {ours['seconds']:.2f} s wall: "
          f"{rate(ours['events_per_cpu_second'])} events per CPU second "
          "(the two differ when the machine is busy)")
    bad = same(ours["checksums"], d1["checksums"])
    if bad:
        print("RESULTS DIFFER from DuckDB's:\n  " + "\n  ".join(bad))
        sys.exit(1)
    print("results: identical to DuckDB's (sessions, viewers, daily, resume checksums)")


def volume(path):
    v = load(path)
    hours = 22
    seed_events = 95.7e6
    full = v["seconds"] * seed_events / v["records"]
    how = "measured" if v["records"] >= seed_events else f"extrapolated from {v['records']} events"
    rows = [("job", "events", "seconds", "events/s", "vs seed 003")]
    rows.append(("playlake in-process merge", v["records"], f"{v['seconds']:.1f}",
                 rate(v["events_per_second"]), ""))
    rows.append((f"playlake at 95.7M ({how})", "95.7M", f"{full:.0f}",
                 rate(v["events_per_second"]), f"{hours * 3600 / full:.0f}x faster"))
    rows.append(("seed 003 nightly batch", "95.7M", f"{hours * 3600}",
                 rate(seed_events / (hours * 3600)), "1x"))
    table(rows)
    print(f"\npeak memory {v['peak_rss_bytes'] / 2**20:.0f} MiB, {v['sessions']} sessions")


def sink(ours_path, peer_path):
    ours, peer = load(ours_path), load(peer_path)
    rows = [("sink", "rows", "seconds", "rows/s", "files", "largest file", "playlake / peer")]
    for name, f in (("playlake sink", ours), ("Python (confluent-kafka + pyarrow)", peer)):
        rows.append((name, f["rows"], f"{f['seconds']:.2f}", rate(f["rows_per_second"]),
                     f["files"], f"{f['largest_file_bytes'] / 2**20:.1f} MiB",
                     f"{ours['rows_per_second'] / f['rows_per_second']:.2f}x"))
    table(rows)
    if "mb_per_second" in peer:
        print(f"\ninput {peer['bytes_read'] / 1e6:.0f} MB of JSON: playlake "
              f"{peer['bytes_read'] / ours['seconds'] / 1e6:.1f} MB/s, Python {peer['mb_per_second']:.1f} MB/s")


def main():
    section, files = sys.argv[1], sys.argv[2:]
    {"processor": processor, "volume": volume, "sink": sink}[section](*files)


if __name__ == "__main__":
    main()
