-- What happened to crimes after custody
--
-- For each custody disposal (charged, bailed, released under investigation,
-- ...), how many detentions there were and how the crimes behind them now
-- stand in RMS: finalised with an outcome, or still under investigation.
-- Custody (SQLite) joined with RMS crimes (REST API).
SELECT k.disposal,
       count(*) AS detentions,
       count(*) FILTER (WHERE c.status = 'finalised') AS crime_finalised,
       count(*) FILTER (WHERE c.status = 'under investigation') AS crime_open,
       round(avg(date_part('epoch', to_timestamp(k.released_at))
                 - date_part('epoch', to_timestamp(k.arrived_at))) / 3600.0, 1)
           AS avg_hours_in_custody
FROM custody.custody_records AS k
JOIN rms.crimes AS c ON c.crime_reference = k.crime_reference
GROUP BY k.disposal
ORDER BY detentions DESC, k.disposal;
