"""The DuckDB peer of the processor benchmark.

Computes SPEC section 3's sessions, concurrent viewers, daily stats (UTC days) and
resume points with SQL over the same events the processor read, as a batch job over
`events.parquet` (parsed, typed, columnar: DuckDB's best case; playlake parses the raw
JSON records). Prints one JSON object: wall time and the same checksums the Rust side
prints, so `bench/run` can check both computed the same results.

Usage: duckdb_processor.py EVENTS_PARQUET THREADS [SESSION_GAP_MS] [WINDOW_MS]
"""

import json
import sys
import time

import duckdb


def main() -> None:
    path, threads = sys.argv[1], int(sys.argv[2])
    gap = int(sys.argv[3]) if len(sys.argv) > 3 else 30_000
    window = int(sys.argv[4]) if len(sys.argv) > 4 else 30_000
    day = 86_400_000
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    started = time.perf_counter()
    # Dedup: (uuid, event_id) counts once everywhere (duplicates are identical copies).
    con.execute(
        "CREATE TEMP TABLE ev AS SELECT DISTINCT ON (uuid, event_id) * "
        "FROM read_parquet(?)",
        [path],
    )
    watched = (
        "CASE WHEN event_type <> 'seek' "
        "THEN greatest(0, position_end - position_start) ELSE 0 END"
    )
    # Sessions: a new session starts at the first event, after a gap > session_gap,
    # or after a stop (which ends and belongs to the previous session).
    con.execute(
        f"""
        CREATE TEMP TABLE sessions AS
        WITH o AS (
            SELECT *, lag(event_time) OVER w AS prev_t, lag(event_type) OVER w AS prev_type
            FROM ev WINDOW w AS (PARTITION BY uuid, stream_id ORDER BY event_time, event_id)
        ), c AS (
            SELECT *, sum(CASE WHEN prev_t IS NULL OR event_time - prev_t > {gap}
                                    OR prev_type = 'stop' THEN 1 ELSE 0 END)
                      OVER (PARTITION BY uuid, stream_id ORDER BY event_time, event_id
                            ROWS UNBOUNDED PRECEDING) AS sid
            FROM o
        )
        SELECT uuid, stream_id, sid, min(event_time) AS session_start,
               max(event_time) AS session_end, sum({watched}) AS watched_seconds,
               count(*) AS event_count,
               count(*) FILTER (WHERE event_type = 'seek') AS seek_count,
               bool_or(event_type = 'stop') AS stop_ended
        FROM c GROUP BY uuid, stream_id, sid
        """
    )
    con.execute(
        f"""
        CREATE TEMP TABLE viewers AS
        SELECT stream_id, (event_time // {window}) * {window} AS window_start,
               count(DISTINCT uuid) AS viewers
        FROM ev WHERE event_type <> 'stop' GROUP BY ALL
        """
    )
    con.execute(
        f"""
        CREATE TEMP TABLE daily AS
        SELECT a.day, a.stream_id, a.views, a.unique_users, a.watched_seconds,
               coalesce(p.peak, 0) AS peak_viewers
        FROM (SELECT event_time // {day} AS day, stream_id, count(DISTINCT uuid) AS views,
                     count(DISTINCT user_id) AS unique_users, sum({watched}) AS watched_seconds
              FROM ev GROUP BY ALL) a
        LEFT JOIN (SELECT window_start // {day} AS day, stream_id, max(viewers) AS peak
                   FROM viewers GROUP BY ALL) p USING (day, stream_id)
        """
    )
    resume = con.execute(
        "SELECT count(*) FROM (SELECT DISTINCT user_id, stream_id FROM ev "
        "WHERE user_id IS NOT NULL)"
    ).fetchall()[0][0]
    seconds = time.perf_counter() - started
    events = con.execute("SELECT count(*) FROM read_parquet(?)", [path]).fetchall()[0][0]
    s = con.execute(
        "SELECT count(*), sum(event_count), sum(seek_count), "
        "count(*) FILTER (WHERE stop_ended), sum(watched_seconds) FROM sessions"
    ).fetchall()[0]
    v = con.execute("SELECT count(*), sum(viewers), max(viewers) FROM viewers").fetchall()[0]
    d = con.execute(
        "SELECT count(*), sum(views), sum(unique_users), sum(watched_seconds), "
        "sum(peak_viewers) FROM daily"
    ).fetchall()[0]
    print(
        json.dumps(
            {
                "events": events,
                "threads": threads,
                "seconds": seconds,
                "events_per_second": events / seconds,
                "checksums": {
                    "sessions": s[0],
                    "session_events": int(s[1]),
                    "session_seeks": int(s[2]),
                    "sessions_stop_ended": s[3],
                    "session_watched_seconds": float(s[4]),
                    "viewer_rows": v[0],
                    "viewers_sum": int(v[1]),
                    "viewers_max": int(v[2]),
                    "daily_rows": d[0],
                    "daily_views": int(d[1]),
                    "daily_unique_users": int(d[2]),
                    "daily_watched_seconds": float(d[3]),
                    "daily_peak_viewers": int(d[4]),
                    "resume_points": resume,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
