-- Stop and search outcomes by area
--
-- For each beat, how many stop and searches there were in October 2026, how
-- many ended in arrest, and how many found what was searched for (data.police.uk's
-- `outcome_linked_to_object_of_search`). The street-level API gives a street
-- name ("On or near beat N3W2"); the beat is taken from it.
--
-- How Bluelamp runs it: the `stops` interface pages with `Link` headers; the
-- month filter goes to it as `date=2026-10`.
SELECT split_part(s.location['street']['name'], 'beat ', 2) AS beat,
       count(*) AS searches,
       count(*) FILTER (WHERE s.outcome = 'Arrest') AS arrests,
       count(*) FILTER (WHERE s.outcome_linked_to_object_of_search) AS found_object,
       round(100.0 * count(*) FILTER (WHERE s.outcome = 'Arrest') / count(*), 1) AS pct_arrest
FROM stops.stops_street AS s
WHERE s.datetime >= TIMESTAMP '2026-10-01T00:00:00Z'
  AND s.datetime <  TIMESTAMP '2026-11-01T00:00:00Z'
GROUP BY 1
ORDER BY searches DESC, beat;
