-- Question: what did one user watch, by day and hour?
-- Parameters: user_id = 'user-0000001'; days (dt) from '2025-06-01' to '2025-06-30'.
-- Edit the literals below.
-- From the raw events (deduplicated by the sink); dt and hour are the event time's
-- day and hour in the pipeline's time zone (UTC by default). watched_seconds sums
-- the media time of non-seek events, as the sessions do; players counts the user's
-- devices (uuids).
SELECT dt, "hour", stream_id,
       COUNT(DISTINCT uuid) AS players,
       COUNT(*) AS events,
       ROUND(SUM(CASE WHEN event_type <> 'seek' AND position_end > position_start
                      THEN position_end - position_start ELSE 0 END), 1) AS watched_seconds
FROM events
WHERE user_id = 'user-0000001'
  AND dt BETWEEN '2025-06-01' AND '2025-06-30'
GROUP BY dt, "hour", stream_id
ORDER BY dt, "hour", stream_id
