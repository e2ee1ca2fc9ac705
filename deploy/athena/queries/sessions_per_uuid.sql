-- Question: how many sessions did each player (uuid) have on a stream, and how much
-- did it watch?
-- Parameters: stream_id = 'live-000'; days (dt) from '2025-06-01' to '2025-06-30';
-- the 20 players with the most sessions. Edit the literals below. Athena: stream_id
-- uses injected partition projection, so the equality filter on it is required.
-- A session ends at a stop event or after a 30 s gap (the processor's session_gap).
SELECT uuid,
       COUNT(*) AS sessions,
       MIN(session_start) AS first_start,
       MAX(session_end) AS last_end,
       ROUND(SUM(watched_seconds), 1) AS watched_seconds,
       SUM(seek_count) AS seeks,
       SUM(CASE WHEN ended_by = 'stop' THEN 1 ELSE 0 END) AS stopped
FROM sessions
WHERE stream_id = 'live-000'
  AND dt BETWEEN '2025-06-01' AND '2025-06-30'
GROUP BY uuid
ORDER BY sessions DESC, uuid
LIMIT 20
