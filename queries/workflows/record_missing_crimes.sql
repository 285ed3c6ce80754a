-- The seed deposit workflow: crimes that C&C closed without a crime reference.
--
-- Some incidents open as a crime and are closed in C&C, but nobody recorded
-- the crime in RMS, so they carry no crime reference number. This script
-- records a crime in RMS for each, then writes each new crime reference back
-- onto its C&C incident. Run it again and it finds nothing left to do.
--
--   bluelamp demo -f queries/workflows/record_missing_crimes.sql
--
-- Try it first without sending anything: uncomment the next line, and every
-- INSERT only validates its rows and records the requests it would send in
-- bluelamp.deposits.
-- SET bluelamp.deposit_mode = 'validate';

-- 1. A crime in RMS for each closed crime incident with no crime reference
--    and no crime in RMS yet. The opening code decides the offence. (The
--    mapping is a UNION ALL rather than a VALUES list: DataFusion 55 applies an
--    INSERT's column list to any VALUES list inside its query.)
INSERT INTO rms.crimes (incident_urn, offence_code, offence, recorded_at, status)
WITH offences (opening_code, offence_code, offence) AS (
    SELECT 'Crime - burglary', '028/01', 'Burglary - residential'
    UNION ALL SELECT 'Crime - theft', '049/00', 'Other theft'
    UNION ALL SELECT 'Crime - violence', '105/01', 'Assault without injury'
    UNION ALL SELECT 'Crime - vehicle', '045/00', 'Theft from a vehicle'
    UNION ALL SELECT 'Crime - criminal damage', '058/01', 'Criminal damage to a dwelling'
)
SELECT i.urn, o.offence_code, o.offence, i.closed_at, 'under investigation'
FROM cad.incidents AS i
JOIN offences AS o ON o.opening_code = i.opening_code
LEFT JOIN rms.crimes AS c ON c.incident_urn = i.urn
WHERE i.status = 'closed'
  AND i.crime_reference IS NULL
  AND c.crime_reference IS NULL
ORDER BY i.urn;

-- 2. Each incident's crime reference, recorded back in C&C.
INSERT INTO cad.record_crime_reference (urn, crime_reference)
SELECT i.urn, c.crime_reference
FROM cad.incidents AS i
JOIN rms.crimes AS c ON c.incident_urn = i.urn
WHERE i.status = 'closed'
  AND i.crime_reference IS NULL
ORDER BY i.urn;

-- 3. What happened to every row, with the crime references RMS assigned.
SELECT statement, row, target, outcome, http_status, identifier, message
FROM bluelamp.deposits
ORDER BY statement, row;
