-- Repeat victims
--
-- People recorded in RMS as the victim of three or more crimes, most
-- victimised first, with the span of dates over which it happened. Restricted
-- (sensitive) investigations are left out.
--
-- All three tables come from RMS; Bluelamp pages through each with the
-- interface's offset/limit paging and joins them locally.
SELECT p.person_id,
       p.forename,
       p.surname,
       count(*) AS crimes,
       min(c.recorded_at) AS first_recorded,
       max(c.recorded_at) AS last_recorded
FROM rms.crime_people AS cp
JOIN rms.people AS p ON p.person_id = cp.person_id
JOIN rms.crimes AS c ON c.crime_reference = cp.crime_reference
WHERE cp.role = 'victim'
  AND NOT c.restricted
GROUP BY p.person_id, p.forename, p.surname
HAVING count(*) >= 3
ORDER BY crimes DESC, p.person_id;
