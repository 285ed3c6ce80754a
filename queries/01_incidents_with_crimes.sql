-- Incidents with their crime records
--
-- Every C&C incident opened on 7 October 2026 that RMS holds a crime for, with
-- the crime's reference, offence and investigation status.
--
-- How Bluelamp runs it: the date range goes to C&C as its `opened_from` /
-- `opened_to` parameters; the join then hands that day's incident URNs to RMS
-- (`incident_urn=...` in batches), so RMS is asked for only those crimes, not
-- its whole crimes table. `EXPLAIN ANALYZE` shows the requests per source.
SELECT i.urn,
       i.grade,
       i.opening_code,
       c.crime_reference,
       c.offence,
       c.status
FROM cad.incidents AS i
JOIN rms.crimes AS c ON c.incident_urn = i.urn
WHERE i.opened_at >= TIMESTAMP '2026-10-07T00:00:00Z'
  AND i.opened_at <  TIMESTAMP '2026-10-08T00:00:00Z'
ORDER BY i.urn, c.crime_reference;
