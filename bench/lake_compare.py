"""Reads two lakes (SPEC section 5 layout) with pyarrow, independently of our Rust code,
and checks that they hold the same results: per table the row count, and checksums of
the columns (integer sums exactly, sums of seconds to 1e-9 relative), plus, for the
tables with string identities, an order-independent fingerprint of them (DuckDB's sum
of hash(...) over every row), so rows with the right counts and the wrong ids differ.

Usage: lake_compare.py OURS_LAKE PEER_LAKE
Prints one JSON object {"ours": {...}, "peer": {...}, "mismatches": [...]} and exits 1
when anything differs.
"""

import json
import math
import os
import sys

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq

TABLES = {
    # table: (integer columns summed, float columns summed, (column, value) counted)
    "sessions": (["event_count", "seek_count"], ["watched_seconds"], ("ended_by", "stop")),
    "viewers": (["viewers"], [], None),
    "daily": (["views", "unique_users", "peak_viewers"], ["watched_seconds"], None),
    "events": ([], ["position_end"], ("event_type", "stop")),
    "errors": ([], [], None),
}


# table: the identity of a row as one string expression (columns stored in the files).
IDENTITIES = {
    "events": "uuid || chr(0) || event_id",
    "sessions": "uuid || chr(0) || stream_id || chr(0) || CAST(epoch_ms(session_start) AS VARCHAR)",
}


def parquet_files(root, table):
    files = []
    for d, dirs, names in os.walk(os.path.join(root, table)):
        dirs[:] = [x for x in dirs if not x.startswith(("_", "."))]
        files += [os.path.join(d, n) for n in names if n.endswith(".parquet")]
    return sorted(files)


def fingerprint(root, table, expr):
    files = parquet_files(root, table)
    if not files:
        return "0"
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    value = duckdb.connect().execute(
        f"SELECT coalesce(sum(hash({expr})), 0) FROM read_parquet([{listed}])").fetchone()[0]
    return str(value)


def stats(root):
    out = {}
    for table, (ints, floats, counted) in TABLES.items():
        s = {"rows": 0, "files": 0, "bytes": 0}
        s.update({f"sum({c})": 0 for c in ints})
        s.update({f"sum({c})": 0.0 for c in floats})
        if counted:
            s[f"count({counted[0]}={counted[1]})"] = 0
        columns = ints + floats + ([counted[0]] if counted else [])
        for d, dirs, names in os.walk(os.path.join(root, table)):
            dirs[:] = [x for x in dirs if not x.startswith(("_", "."))]
            for n in names:
                if not n.endswith(".parquet"):
                    continue
                path = os.path.join(d, n)
                t = pq.read_table(path, columns=columns)
                s["rows"] += t.num_rows
                s["files"] += 1
                s["bytes"] += os.path.getsize(path)
                for c in ints + floats:
                    s[f"sum({c})"] += pc.sum(t[c]).as_py() or 0
                if counted:
                    hits = pc.sum(pc.equal(t[counted[0]], counted[1])).as_py() or 0
                    s[f"count({counted[0]}={counted[1]})"] += hits
        if table in IDENTITIES:
            s[f"fingerprint({IDENTITIES[table]})"] = fingerprint(root, table, IDENTITIES[table])
        out[table] = s
    return out


def main():
    ours, peer = stats(sys.argv[1]), stats(sys.argv[2])
    mismatches = []
    for table, s in ours.items():
        for k, a in s.items():
            if k in ("files", "bytes"):
                continue
            b = peer[table][k]
            ok = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6) if isinstance(a, float) else a == b
            if not ok:
                mismatches.append(f"{table} {k}: playlake {a} vs Python {b}")
    print(json.dumps({"ours": ours, "peer": peer, "mismatches": mismatches}))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
