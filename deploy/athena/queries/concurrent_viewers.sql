-- Question: how many viewers watched one stream at the same time, over time?
-- Parameters: stream_id = 'live-000'; days (dt) from '2025-06-01' to '2025-06-30'.
-- Edit the literals below. Athena: stream_id uses injected partition projection, so
-- the equality filter on it is required.
-- One row per 30 s window (the processor's viewer_window) with at least one viewer:
-- the distinct players (uuids) with a non-stop event in the window. Windows without
-- viewers have no row.
SELECT window_start, window_end, viewers
FROM viewers
WHERE stream_id = 'live-000'
  AND dt BETWEEN '2025-06-01' AND '2025-06-30'
ORDER BY window_start
