-- Crimes without an outcome after 14 days
--
-- Crimes still under investigation with no Home Office outcome, recorded more
-- than 14 days before the end of the demo month (31 October 2026; use
-- `now()` against live data), by offence: how many, and the oldest.
--
-- How Bluelamp runs it: `status` and the `recorded_at` bound go to RMS as
-- query parameters; RMS returns only the matching crimes.
SELECT c.offence_code,
       c.offence,
       count(*) AS open_crimes,
       min(c.recorded_at) AS oldest_recorded
FROM rms.crimes AS c
WHERE c.status = 'under investigation'
  AND c.outcome_code IS NULL
  AND c.recorded_at < TIMESTAMP '2026-11-01T00:00:00Z' - INTERVAL '14 days'
GROUP BY c.offence_code, c.offence
ORDER BY open_crimes DESC, c.offence_code, c.offence;
