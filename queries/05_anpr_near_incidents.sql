-- Vehicles seen by ANPR near an incident
--
-- For incidents on 7 October 2026 that name a vehicle: every ANPR read of that
-- vehicle within 30 minutes either side of the call, with the camera and its
-- distance from the incident in kilometres (an equirectangular approximation,
-- good to a few metres at this size).
--
-- How Bluelamp runs it: ANPR reads are Parquet files partitioned by day; the
-- `day` filter means only the files for 6-8 October are opened.
SELECT i.urn,
       i.vehicle_registration AS plate,
       i.call_at,
       a.camera_id,
       a.seen_at,
       round((date_part('epoch', a.seen_at) - date_part('epoch', i.call_at)) / 60.0, 1)
           AS minutes_after_call,
       round(111.32 * sqrt(power(a.lat - i.location['lat'], 2)
             + power((a.lon - i.location['lon']) * cos(radians(i.location['lat'])), 2)), 2)
           AS km_from_incident
FROM cad.incidents AS i
JOIN anpr.reads AS a ON a.plate = i.vehicle_registration
WHERE i.opened_at >= TIMESTAMP '2026-10-07T00:00:00Z'
  AND i.opened_at <  TIMESTAMP '2026-10-08T00:00:00Z'
  AND a.day BETWEEN '2026-10-06' AND '2026-10-08'
  AND a.seen_at BETWEEN i.call_at - INTERVAL '30 minutes' AND i.call_at + INTERVAL '30 minutes'
ORDER BY i.urn, a.seen_at, a.camera_id;
