-- Response times against grade targets
--
-- For incidents opened on 7 October 2026: how many were attended within the
-- grade's target (minutes from the incident being opened to the first unit at
-- scene), and the median and slowest attendance. Targets are force policy;
-- edit the `targets` list to match yours. Referred (R) incidents get no
-- attendance and are left out.
--
-- How Bluelamp runs it: `cad.incident_assignments` is a lookup table
-- (`GET /incidents/{urn}/assignments`); the join supplies the day's URNs, so
-- only those incidents' assignments are fetched.
WITH targets (grade, name, target_minutes) AS (
    VALUES ('I', 'Immediate', 15),
           ('S', 'Significant (priority)', 60),
           ('E', 'Extended (scheduled)', 2880)
),
first_at_scene AS (
    SELECT i.urn,
           i.grade,
           (date_part('epoch', min(a.at_scene_at)) - date_part('epoch', i.opened_at)) / 60.0
               AS minutes
    FROM cad.incidents AS i
    JOIN cad.incident_assignments AS a ON a.incident_urn = i.urn
    WHERE i.opened_at >= TIMESTAMP '2026-10-07T00:00:00Z'
      AND i.opened_at <  TIMESTAMP '2026-10-08T00:00:00Z'
      AND i.grade <> 'R'
    GROUP BY i.urn, i.grade, i.opened_at
)
SELECT t.grade,
       t.name,
       t.target_minutes,
       count(*) AS incidents,
       count(f.minutes) AS attended,
       count(*) FILTER (WHERE f.minutes <= t.target_minutes) AS within_target,
       round(100.0 * count(*) FILTER (WHERE f.minutes <= t.target_minutes) / count(*), 1)
           AS pct_within_target,
       round(median(f.minutes), 1) AS median_minutes,
       round(max(f.minutes), 1) AS slowest_minutes
FROM first_at_scene AS f
JOIN targets AS t ON t.grade = f.grade
GROUP BY t.grade, t.name, t.target_minutes
ORDER BY t.target_minutes;
