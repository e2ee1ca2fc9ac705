"""Figures of a `playlake sink` run read from the lake it wrote (independently of our
Rust code): rows (pyarrow), bytes, files, largest file, over the wall time given.

Usage: lake_stats.py TABLE_DIR START_EPOCH_S END_EPOCH_S
"""

import json
import os
import sys

import pyarrow.parquet as pq


def main():
    root, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    files = []
    rows = 0
    for d, _, names in os.walk(root):
        for n in names:
            if n.endswith(".parquet"):
                path = os.path.join(d, n)
                files.append(os.path.getsize(path))
                rows += pq.ParquetFile(path).metadata.num_rows
    seconds = t1 - t0
    print(json.dumps({
        "rows": rows,
        "seconds": seconds,
        "rows_per_second": rows / seconds,
        "files": len(files),
        "largest_file_bytes": max(files, default=0),
        "total_file_bytes": sum(files),
    }))


if __name__ == "__main__":
    main()
