"""Prints the figures of one bench/run section side by side with its peer.

Usage: report.py SECTION FILE...   (the JSON files the section wrote)

For the processor section it also checks that playlake and DuckDB computed the same
results (integer checksums equal, sums of seconds equal to 1e-9 relative) and exits 1
when they differ: a fast wrong answer is not a benchmark result. The e2e and sink-local
sections do the same with the two lakes (bench/lake_compare.py's verdict).
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


def mib(n):
    return f"{n / 2**20:.0f} MiB"


def lakes(cmp, tables, verdict):
    """Rows and files per table of both lakes (bench/lake_compare.py's output); exits 1
    when the lakes differ, else prints `verdict`."""
    r = [("table", "playlake rows", "Python rows", "playlake files", "Python files")]
    for t in tables:
        a, b = cmp["ours"][t], cmp["peer"][t]
        r.append((t, a["rows"], b["rows"], a["files"], b["files"]))
    print()
    table(r)
    if cmp["mismatches"]:
        print("\nLAKES DIFFER:\n  " + "\n  ".join(cmp["mismatches"]))
        sys.exit(1)
    print(f"\nlakes: {verdict}")


def e2e(ours_path, peer_path, compare_path, read_path):
    ours, peer, cmp, read = load(ours_path), load(peer_path), load(compare_path), load(read_path)
    records = ours["records"]
    if peer["records"] != records:
        print(f"the Python pipeline read {peer['records']} records, playlake produced {records}")
    p, s, py = ours["process"], ours["sink"], ours["python"]
    # Both sides timed the same way: around the commands, interpreter start included.
    ours_rate = records / ours["seconds"]
    peer_rate = records / py["seconds"]
    cpu_ours = p["cpu_seconds"] + s["cpu_seconds"]
    rows = [("pipeline", "records", "seconds", "records/s", "CPU s", "records/CPU s",
             "peak RSS", "playlake / peer")]
    rows.append(("playlake process --drain + sink --drain", records, f"{ours['seconds']:.2f}",
                 rate(ours_rate), f"{cpu_ours:.2f}", rate(records / cpu_ours),
                 mib(max(p["peak_rss_bytes"], s["peak_rss_bytes"])),
                 f"{ours_rate / peer_rate:.2f}x"))
    rows.append(("  process --drain", records, f"{p['seconds']:.2f}",
                 rate(records / p["seconds"]), f"{p['cpu_seconds']:.2f}",
                 rate(records / p["cpu_seconds"]), mib(p["peak_rss_bytes"]), ""))
    rows.append(("  sink --drain", "", f"{s['seconds']:.2f}", "", f"{s['cpu_seconds']:.2f}",
                 "", mib(s["peak_rss_bytes"]), ""))
    rows.append(("Python (confluent-kafka + pyarrow)", peer["records"],
                 f"{py['seconds']:.2f}", rate(peer_rate), f"{py['cpu_seconds']:.2f}",
                 rate(peer["records"] / py["cpu_seconds"]), mib(py["peak_rss_bytes"]),
                 "1.00x"))
    rows.append(("Tansu ceiling: bare consumer, no processing", read["records"],
                 f"{read['seconds']:.2f}", rate(read["records_per_second"]), "", "", "", ""))
    table(rows)
    print(f"\nrecords per second are end to end: the {records} records produced (valid "
          f"{peer['valid']}, DLQ {peer['invalid']}, duplicates {peer['duplicates']}, late "
          f"{peer['late']}) over the wall time from the start until the lake is complete, "
          "both sides timed around their commands; CPU seconds are the pipelines' own "
          "(user + system), not the broker's")
    print(f"per CPU second: playlake / Python = "
          f"{(records / cpu_ours) / (peer['records'] / py['cpu_seconds']):.2f}x")
    # Issue 3's figure: the processor through Tansu (produce, process, checkpoint) against
    # Tansu's own produce + consume of the same records, the ceiling on this machine.
    # The produce time is the same run's for both sides.
    produce_s = ours["produce"]["seconds"]
    processed = records / (produce_s + p["seconds"])
    ceiling = read["records"] / (produce_s + read["seconds"])
    print(f"processor through Tansu (produce {produce_s:.2f} s + process --drain with "
          f"checkpoints {p['seconds']:.2f} s): {rate(processed)} records/s; Tansu's own "
          f"produce + bare consume ({produce_s:.2f} s + {read['seconds']:.2f} s): "
          f"{rate(ceiling)} records/s; ratio {processed / ceiling:.2f}")
    lakes(cmp, list(cmp["ours"]), "same rows in every table, same checksums (counts, sums "
          "of counts and seconds)")


def sink_local(peer_path, compare_path, *ours_paths):
    peer, cmp = load(peer_path), load(compare_path)
    runs = [load(p) for p in ours_paths]
    if not runs:
        sys.exit("sink-local: no run of playlake's sink to report")
    # The median run by wall time (the upper one of an even count).
    ours = sorted(runs, key=lambda r: r["rows_per_second"])[len(runs) // 2]
    rows = [("sink (no broker: records pre-fetched)", "rows", "seconds", "rows/s", "input MB/s",
             "CPU s", "rows/CPU s", "peak RSS", "files", "largest file", "playlake / peer")]
    ratio = ours["rows_per_second"] / peer["rows_per_second"]
    for i, run in enumerate(runs, 1):
        label = f"playlake sink (in-process log, drain), run {i} of {len(runs)}"
        if run is ours and len(runs) > 1:
            label += ", the median"
        rows.append((label, run["rows"], f"{run['seconds']:.2f}",
                     rate(run["rows_per_second"]), f"{run['mb_per_second']:.1f}",
                     f"{run['cpu_seconds']:.2f}", rate(run["rows_per_cpu_second"]),
                     mib(run["sink_peak_bytes"]), len(run["files"]),
                     mib(max((f["bytes"] for f in run["files"]), default=0)),
                     f"{run['rows_per_second'] / peer['rows_per_second']:.2f}x"))
        if run["rows"] != ours["rows"]:
            sys.exit(f"sink-local: run {i} wrote {run['rows']} rows, the median run {ours['rows']}")
    rows.append(("Python (pyarrow, same file, same batches)", peer["rows"],
                 f"{peer['seconds']:.2f}", rate(peer["rows_per_second"]),
                 f"{peer['mb_per_second']:.1f}", f"{peer['cpu_seconds']:.2f}",
                 rate(peer["rows_per_cpu_second"]), mib(peer["peak_rss_bytes"]), peer["files"],
                 mib(peer["largest_file_bytes"]), "1.00x"))
    table(rows)
    cpu_ratio = ours["rows_per_cpu_second"] / peer["rows_per_cpu_second"]
    print(f"\n{ours['records']} records ({ours['input_bytes'] / 1e6:.0f} MB of JSON) on "
          f"{ours['partitions']} input partition(s); playlake's median run of {len(runs)} "
          f"(the Python sink ran after the first): {ratio:.2f}x wall; per CPU second "
          f"playlake / Python = "
          f"{cpu_ratio:.2f}x; goal 10x: {'met' if ratio >= 10 else 'NOT met'} (wall), "
          f"{'met' if cpu_ratio >= 10 else 'NOT met'} (CPU)")
    print(f"playlake's peak RSS is above the loaded log ({mib(ours['rss_after_load_bytes'])} "
          f"before the sink started; {mib(ours['peak_rss_bytes'])} in all); Python's is the "
          "whole process (it streams its input from the file)")
    target = ours["target_file_bytes"]
    reasons = ours["report"]["files_by_reason"]
    busiest = {}
    for f in ours["files"]:
        busiest.setdefault(f["dir"], []).append(f)
    print(f"\nfiles per partition directory (target {mib(target)}):")
    r = [("sink", "directory", "files", "rows", "sizes")]
    for d, files in sorted(busiest.items()):
        r.append(("playlake", d, len(files), sum(f["rows"] for f in files),
                  ", ".join(f"{f['bytes'] / 2**20:.1f}" for f in files) + " MiB"))
    theirs = {}
    for f in peer["file_list"]:
        theirs.setdefault(f["dir"], []).append(f)
    for d, files in sorted(theirs.items()):
        sizes = [f["bytes"] / 2**20 for f in files]
        shown = ", ".join(f"{x:.1f}" for x in sizes[:6]) + (", ..." if len(sizes) > 6 else "")
        r.append(("Python", d, len(files), sum(f["rows"] for f in files), shown + " MiB"))
    table(r)
    size_rolled = reasons.get("size", 0)
    largest = max((f["bytes"] for f in ours["files"]), default=0)
    # The roll is decided on the writer's estimate (bytes written plus the open row
    # group before compression), so a size-rolled file ends a little under the target.
    near = largest >= 0.95 * target
    print(f"\nplaylake rolled {dict(reasons)}: {size_rolled} file(s) on size, the largest "
          f"{largest / 2**20:.1f} MiB = {100 * largest / target:.1f}% of the target; target "
          f"size {'reached (size-based roll)' if size_rolled and near else 'NOT reached'}")
    lakes(cmp, ["events"], "same rows, same checksums (lake_compare.py: counts, "
          "sum(position_end), count(event_type=stop))")


def main():
    section, files = sys.argv[1], sys.argv[2:]
    {"processor": processor, "volume": volume, "sink": sink, "e2e": e2e,
     "sink-local": sink_local}[section](*files)


if __name__ == "__main__":
    main()
