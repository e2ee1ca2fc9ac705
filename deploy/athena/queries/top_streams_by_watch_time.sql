-- Question: which streams were watched the most, by watch time?
-- Parameters: days (dt) from '2025-06-01' to '2025-06-30'; the top 10. Edit the
-- literals below.
-- Watch time is the media time played (seeks excluded), summed over the days;
-- views add up each day's distinct players.
SELECT stream_id,
       ROUND(SUM(watched_seconds) / 3600.0, 2) AS watched_hours,
       SUM(views) AS views,
       MAX(peak_viewers) AS peak_viewers
FROM daily
WHERE dt BETWEEN '2025-06-01' AND '2025-06-30'
GROUP BY stream_id
ORDER BY SUM(watched_seconds) DESC, stream_id
LIMIT 10
