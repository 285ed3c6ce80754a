-- Suspects brought into custody for crimes recorded in a period
--
-- For crimes recorded in the first week of October 2026: who was detained,
-- where, when, and how custody ended, with their role on the crime in RMS.
-- Custody is a SQLite database; crimes and people come from the RMS API.
--
-- How Bluelamp runs it: the `recorded_at` range goes to RMS as
-- `recorded_from` / `recorded_to`; the custody rows are read from SQLite and
-- the people are looked up in RMS by the custody records' person ids.
SELECT k.custody_id,
       k.station,
       k.arrived_at,
       k.disposal,
       c.crime_reference,
       c.offence,
       cp.role,
       p.person_id,
       p.forename,
       p.surname
FROM custody.custody_records AS k
JOIN rms.crimes AS c ON c.crime_reference = k.crime_reference
JOIN rms.crime_people AS cp
  ON cp.crime_reference = k.crime_reference AND cp.person_id = k.person_id
JOIN rms.people AS p ON p.person_id = k.person_id
WHERE c.recorded_at >= TIMESTAMP '2026-10-01T00:00:00Z'
  AND c.recorded_at <  TIMESTAMP '2026-10-08T00:00:00Z'
  AND cp.role IN ('suspect', 'offender')
ORDER BY k.arrived_at, k.custody_id;
