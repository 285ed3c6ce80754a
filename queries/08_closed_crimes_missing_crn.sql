-- Closed crime incidents still waiting for a crime reference
--
-- C&C incidents that opened as a crime and were closed, but carry no crime
-- reference number, and whether RMS holds any crime for them. These are the
-- incidents the deposit workflow (recording a crime in RMS and writing its
-- reference back to C&C) exists for.
SELECT i.urn,
       i.grade,
       i.opening_code,
       i.closed_at,
       c.crime_reference AS crime_in_rms
FROM cad.incidents AS i
LEFT JOIN rms.crimes AS c ON c.incident_urn = i.urn
WHERE i.status = 'closed'
  AND i.opening_code LIKE 'Crime%'
  AND i.crime_reference IS NULL
ORDER BY i.closed_at, i.urn;
