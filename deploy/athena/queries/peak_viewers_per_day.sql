-- Question: what was each stream's peak of concurrent viewers, per day?
-- Parameters: days (dt) from '2025-06-01' to '2025-06-30'. Edit the literals below.
-- peak_viewers is the largest 30 s window count of the day; views are the distinct
-- players (uuids) and unique_users the distinct signed-in users of that day.
-- Busiest stream first within each day.
SELECT dt, stream_id, peak_viewers, views, unique_users
FROM daily
WHERE dt BETWEEN '2025-06-01' AND '2025-06-30'
ORDER BY dt, peak_viewers DESC, stream_id
