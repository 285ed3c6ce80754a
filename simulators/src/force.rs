//! The demo force's data model and its generator.
//!
//! Scale 1 is roughly a month of a mid-sized force: ~50k incidents, ~15k crimes,
//! ~20k people, ~4k custody records, ~1M ANPR reads and ~3k stop and search
//! records; everything scales linearly. Codes follow the public lists in
//! `shared/reference` (incident grades, Home Office outcome codes, data.police.uk
//! stop-and-search fields).

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::rng::Rng;

/// A command-and-control incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Unique reference, e.g. `CAD-20261003-00042`.
    pub urn: String,
    /// When the call came in.
    pub call_at: DateTime<Utc>,
    /// When the incident was opened.
    pub opened_at: DateTime<Utc>,
    /// When it was closed, if it has been.
    pub closed_at: Option<DateTime<Utc>>,
    /// When the first resource arrived, if one did.
    pub arrived_at: Option<DateTime<Utc>>,
    /// Response grade: I, S, E or R.
    pub grade: &'static str,
    /// `open` or `closed`.
    pub status: &'static str,
    /// Opening category (NSIR style).
    pub opening_code: &'static str,
    /// Closing category, once closed.
    pub closing_code: Option<&'static str>,
    /// Beat code.
    pub beat: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// The RMS crime reference, once recorded back on the incident.
    pub crime_reference: Option<String>,
    /// A vehicle involved, when one is known.
    pub vehicle_registration: Option<String>,
}

/// One entry in an incident's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// The incident.
    pub urn: String,
    /// Position in the log, from 1.
    pub seq: i64,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// Who wrote it (operator or callsign).
    pub author: String,
    /// The entry.
    pub text: &'static str,
}

/// A resource (unit) assigned to an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The incident.
    pub urn: String,
    /// The unit's callsign.
    pub callsign: String,
    /// When it was assigned.
    pub assigned_at: DateTime<Utc>,
    /// When it arrived, if it did.
    pub at_scene_at: Option<DateTime<Utc>>,
    /// When it was released, if it has been.
    pub cleared_at: Option<DateTime<Utc>>,
}

/// A crime recorded in RMS.
#[derive(Debug, Clone, PartialEq)]
pub struct Crime {
    /// Crime reference number, e.g. `CRN/26/000123`.
    pub crime_reference: String,
    /// The C&C incident it came from.
    pub incident_urn: String,
    /// Home Office offence classification code.
    pub offence_code: &'static str,
    /// Offence description.
    pub offence: &'static str,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// `under investigation`, `finalised`.
    pub status: &'static str,
    /// Home Office outcome code (1–22) once finalised.
    pub outcome_code: Option<&'static str>,
    /// A sensitive investigation whose details are restricted.
    pub restricted: bool,
}

/// A person known to RMS (synthetic names only).
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// Person identifier, e.g. `P0000042`.
    pub person_id: String,
    /// Forename.
    pub forename: &'static str,
    /// Surname.
    pub surname: &'static str,
    /// Year of birth.
    pub birth_year: i32,
}

/// A person's part in a crime.
#[derive(Debug, Clone, PartialEq)]
pub struct CrimePerson {
    /// The crime.
    pub crime_reference: String,
    /// The person.
    pub person_id: String,
    /// `victim`, `suspect`, `witness` or `offender`.
    pub role: &'static str,
}

/// A custody record.
#[derive(Debug, Clone, PartialEq)]
pub struct CustodyRecord {
    /// Custody number.
    pub custody_id: String,
    /// The detained person.
    pub person_id: String,
    /// The crime they were arrested for.
    pub crime_reference: String,
    /// Arrival at the custody suite.
    pub arrived_at: DateTime<Utc>,
    /// Release, if released.
    pub released_at: Option<DateTime<Utc>>,
    /// Custody suite.
    pub station: &'static str,
    /// Disposal decision.
    pub disposal: &'static str,
}

/// One ANPR camera read.
#[derive(Debug, Clone, PartialEq)]
pub struct AnprRead {
    /// Read identifier.
    pub read_id: i64,
    /// Registration read (shared by every read of the plate: a force at
    /// scale 100 holds 100M reads).
    pub plate: Arc<str>,
    /// Camera (shared by its reads).
    pub camera_id: Arc<str>,
    /// When.
    pub seen_at: DateTime<Utc>,
    /// Camera latitude.
    pub lat: f64,
    /// Camera longitude.
    pub lon: f64,
}

/// A stop and search record, with data.police.uk field names.
#[derive(Debug, Clone, PartialEq)]
pub struct StopSearch {
    /// Identifier.
    pub id: i64,
    /// When.
    pub datetime: DateTime<Utc>,
    /// Age band.
    pub age_range: &'static str,
    /// Gender.
    pub gender: &'static str,
    /// Legislation used.
    pub legislation: &'static str,
    /// What was searched for.
    pub object_of_search: &'static str,
    /// Person / vehicle search.
    pub search_type: &'static str,
    /// Outcome text.
    pub outcome: &'static str,
    /// Beat code where it happened.
    pub beat: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
}

/// The whole force's data.
#[derive(Debug, Clone, Default)]
pub struct Force {
    /// C&C incidents.
    pub incidents: Vec<Incident>,
    /// C&C incident log entries.
    pub incident_log: Vec<LogEntry>,
    /// C&C resource assignments.
    pub assignments: Vec<Assignment>,
    /// RMS crimes.
    pub crimes: Vec<Crime>,
    /// RMS people.
    pub people: Vec<Person>,
    /// RMS crime–person links.
    pub crime_people: Vec<CrimePerson>,
    /// Custody records.
    pub custody: Vec<CustodyRecord>,
    /// ANPR reads.
    pub anpr: Vec<AnprRead>,
    /// Stop and search.
    pub stops: Vec<StopSearch>,
}

const GRADES: &[&str] = &["I", "S", "E", "R"];
const GRADE_WEIGHTS: &[u32] = &[20, 45, 25, 10];
/// Opening categories; the first ones are crimes.
const OPENING: &[&str] = &[
    "Crime - burglary",
    "Crime - theft",
    "Crime - violence",
    "Crime - vehicle",
    "Crime - criminal damage",
    "ASB - Personal",
    "ASB - Nuisance",
    "Concern for safety",
    "Missing person",
    "Road traffic collision",
    "Suspicious circumstances",
];
const OPENING_WEIGHTS: &[u32] = &[8, 9, 7, 4, 4, 12, 12, 14, 6, 12, 12];
const CRIME_OPENINGS: usize = 5;
const LOG_TEXT: &[&str] = &[
    "Call received, details taken",
    "Caller reports situation ongoing",
    "Unit assigned",
    "Unit at scene",
    "Update from scene: area secured",
    "Caller recontacted, no answer",
    "Supervisor reviewed grading",
    "Incident closed",
];
const CLOSING: &[&str] = &[
    "Crime recorded",
    "Advice given",
    "No further action",
    "Resolved at scene",
    "Referred to partner agency",
];
const OFFENCES: &[(&str, &str, usize)] = &[
    ("028/01", "Burglary - residential", 0),
    ("030/01", "Burglary - business and community", 0),
    ("049/00", "Other theft", 1),
    ("046/00", "Shoplifting", 1),
    ("008/01", "Assault with injury", 2),
    ("105/01", "Assault without injury", 2),
    ("045/00", "Theft from a vehicle", 3),
    ("037/02", "Aggravated vehicle taking", 3),
    ("058/01", "Criminal damage to a dwelling", 4),
    (
        "058/02",
        "Criminal damage to a building other than a dwelling",
        4,
    ),
];
const OUTCOMES: &[&str] = &["1", "2", "3", "8", "14", "15", "16", "18", "20", "21"];
const OUTCOME_WEIGHTS: &[u32] = &[12, 2, 5, 4, 20, 18, 15, 20, 2, 2];
const FORENAMES: &[&str] = &[
    "Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn",
    "Rowan", "Harper", "Elliot", "Robin", "Sasha", "Drew",
];
const SURNAMES: &[&str] = &[
    "Ashdown",
    "Brackley",
    "Corran",
    "Dunmore",
    "Ellery",
    "Fenwick",
    "Garside",
    "Holloway",
    "Ingleby",
    "Jessop",
    "Kettering",
    "Lindqvist",
    "Marlow",
    "Northey",
    "Oakhurst",
    "Pellow",
    "Quarrie",
    "Rudd",
    "Stanmore",
    "Thorley",
];
const ROLES: &[&str] = &["victim", "suspect", "witness", "offender"];
const STATIONS: &[&str] = &["Central Custody", "Northgate Custody", "Riverside Custody"];
const DISPOSALS: &[&str] = &[
    "Charged",
    "Released under investigation",
    "Bailed",
    "No further action",
    "Cautioned",
];
const AGE_RANGES: &[&str] = &["under 10", "10-17", "18-24", "25-34", "over 34"];
const GENDERS: &[&str] = &["Male", "Female", "Other"];
const LEGISLATION: &[&str] = &[
    "Police and Criminal Evidence Act 1984 (section 1)",
    "Misuse of Drugs Act 1971 (section 23)",
    "Criminal Justice and Public Order Act 1994 (section 60)",
];
const OBJECTS: &[&str] = &[
    "Controlled drugs",
    "Offensive weapons",
    "Stolen goods",
    "Article for use in theft",
];
const SEARCH_TYPES: &[&str] = &[
    "Person search",
    "Vehicle search",
    "Person and Vehicle search",
];
const STOP_OUTCOMES: &[&str] = &[
    "A no further action disposal",
    "Arrest",
    "Community resolution",
    "Khat or Cannabis warning",
    "Summons / charged by post",
];

/// The month the demo force's data covers starts here.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Days of data.
pub const DAYS: i64 = 30;
/// Centre of the fictional force area.
const CENTRE: (f64, f64) = (52.63, -1.13);
/// Beats per axis of the grid over the area.
const GRID: i64 = 6;

fn scaled(base: f64, scale: f64) -> usize {
    ((base * scale).round() as usize).max(1)
}

fn beat_of(lat: f64, lon: f64) -> String {
    let row = (((lat - CENTRE.0) / 0.12 + 0.5) * GRID as f64).clamp(0.0, (GRID - 1) as f64) as i64;
    let col = (((lon - CENTRE.1) / 0.2 + 0.5) * GRID as f64).clamp(0.0, (GRID - 1) as f64) as i64;
    format!("B{:02}", row * GRID + col + 1)
}

fn point(rng: &mut Rng) -> (f64, f64) {
    let lat = CENTRE.0 + (rng.unit() - 0.5) * 0.12;
    let lon = CENTRE.1 + (rng.unit() - 0.5) * 0.2;
    ((lat * 1e5).round() / 1e5, (lon * 1e5).round() / 1e5)
}

fn plate(rng: &mut Rng) -> String {
    let letters = b"ABCDEFGHJKLMNOPRSTUVWXYZ";
    let l = |rng: &mut Rng| letters[rng.below(letters.len() as u64) as usize] as char;
    format!(
        "{}{}{:02} {}{}{}",
        l(rng),
        l(rng),
        10 + rng.below(65),
        l(rng),
        l(rng),
        l(rng)
    )
}

/// Generates the force for `seed` at `scale` (1.0 ≈ one month of a mid-sized
/// force). `progress` is called with a short label as each system is generated.
pub fn generate(seed: u64, scale: f64, mut progress: impl FnMut(&str)) -> Force {
    let root = Rng::new(seed);
    let start = epoch();
    let mut force = Force::default();

    progress("people");
    let mut rng = root.fork("people");
    for i in 0..scaled(20_000.0, scale) {
        force.people.push(Person {
            person_id: format!("P{:07}", i + 1),
            forename: rng.choose(FORENAMES),
            surname: rng.choose(SURNAMES),
            birth_year: 1950 + rng.below(58) as i32,
        });
    }

    progress("incidents and crimes");
    let mut rng = root.fork("incidents");
    // Log entries and assignments draw from their own stream, so they do not
    // change the incidents a seed produces.
    let mut ops = root.fork("operations");
    let incident_count = scaled(50_000.0, scale);
    let mut per_day = vec![0u32; DAYS as usize];
    let mut crime_seq = 0u32;
    let mut vehicles = Vec::new();
    for _ in 0..incident_count {
        let call_at = start + Duration::seconds(rng.below((DAYS * 86_400) as u64) as i64);
        let day = ((call_at - start).num_days()).clamp(0, DAYS - 1) as usize;
        per_day[day] += 1;
        let urn = format!("CAD-{}-{:05}", call_at.format("%Y%m%d"), per_day[day]);
        let grade = GRADES[rng.weighted(GRADE_WEIGHTS)];
        let opening_index = rng.weighted(OPENING_WEIGHTS);
        let is_crime = opening_index < CRIME_OPENINGS;
        let opened_at = call_at + Duration::seconds(30 + rng.below(300) as i64);
        let target_minutes = match grade {
            "I" => 15,
            "S" => 60,
            "E" => 2880,
            _ => 4320,
        };
        // Most attend within target; some do not.
        let attend_minutes = if rng.chance(0.8) {
            1 + rng.below(target_minutes) as i64
        } else {
            target_minutes as i64 + 1 + rng.below(target_minutes) as i64
        };
        let arrived_at = (grade != "R").then(|| opened_at + Duration::minutes(attend_minutes));
        let closed = rng.chance(0.9);
        let closed_at = closed
            .then(|| opened_at + Duration::minutes(attend_minutes + 20 + rng.below(600) as i64));
        let (lat, lon) = point(&mut rng);
        let vehicle = (opening_index == 3 || rng.chance(0.08)).then(|| plate(&mut rng));
        if let Some(v) = &vehicle {
            vehicles.push((v.clone(), call_at, lat, lon));
        }
        let mut incident = Incident {
            urn: urn.clone(),
            call_at,
            opened_at,
            closed_at,
            arrived_at,
            grade,
            status: if closed { "closed" } else { "open" },
            opening_code: OPENING[opening_index],
            closing_code: None,
            beat: beat_of(lat, lon),
            lat,
            lon,
            crime_reference: None,
            vehicle_registration: vehicle,
        };
        if closed {
            incident.closing_code = Some(if is_crime {
                CLOSING[0]
            } else {
                *rng.pick(&CLOSING[1..])
            });
        }
        // Crimes: 10% of closed crime incidents still await their crime record,
        // which the deposit workflow creates.
        if is_crime && !(closed && rng.chance(0.1)) {
            crime_seq += 1;
            let crime_reference = format!("CRN/26/{crime_seq:06}");
            let offences: Vec<&(&str, &str, usize)> =
                OFFENCES.iter().filter(|o| o.2 == opening_index).collect();
            let offence = **rng.pick(&offences);
            let recorded_at = opened_at + Duration::minutes(30 + rng.below(1440) as i64);
            let finalised = rng.chance(0.6);
            force.crimes.push(Crime {
                crime_reference: crime_reference.clone(),
                incident_urn: urn,
                offence_code: offence.0,
                offence: offence.1,
                recorded_at,
                status: if finalised {
                    "finalised"
                } else {
                    "under investigation"
                },
                outcome_code: finalised.then(|| OUTCOMES[rng.weighted(OUTCOME_WEIGHTS)]),
                restricted: rng.chance(0.01),
            });
            if closed {
                incident.crime_reference = Some(crime_reference);
            }
        }
        let units = 1 + ops.below(3);
        for unit in 0..units {
            let assigned_at = opened_at + Duration::minutes(unit as i64 * 5 + ops.below(5) as i64);
            let at_scene_at = arrived_at.map(|a| {
                if unit == 0 {
                    a
                } else {
                    a + Duration::minutes(ops.below(30) as i64)
                }
            });
            force.assignments.push(Assignment {
                urn: incident.urn.clone(),
                callsign: format!(
                    "{}{:02}",
                    ["AL", "BR", "CH", "DE"][ops.below(4) as usize],
                    1 + ops.below(40)
                ),
                assigned_at,
                at_scene_at: at_scene_at.map(|t| t.max(assigned_at)),
                cleared_at: closed_at.map(|c| c.max(assigned_at)),
            });
        }
        let entries = 2 + ops.below(4) as i64;
        for seq in 1..=entries {
            force.incident_log.push(LogEntry {
                urn: incident.urn.clone(),
                seq,
                at: opened_at + Duration::minutes((seq - 1) * (1 + ops.below(20) as i64)),
                author: format!("OP{:03}", 1 + ops.below(60)),
                text: if seq == 1 {
                    LOG_TEXT[0]
                } else {
                    ops.choose(&LOG_TEXT[1..])
                },
            });
        }
        force.incidents.push(incident);
    }

    progress("crime people and custody");
    let mut rng = root.fork("links");
    let people = force.people.len() as u64;
    // A small group of people are repeat victims and repeat suspects.
    let frequent = (people / 50).max(1);
    let mut custody_seq = 0u32;
    for crime in &force.crimes {
        let links = 1 + rng.below(3);
        for n in 0..links {
            let role = if n == 0 {
                "victim"
            } else {
                ROLES[1 + rng.below(3) as usize]
            };
            let index = if rng.chance(0.2) {
                rng.below(frequent)
            } else {
                rng.below(people)
            };
            let person_id = force.people[index as usize].person_id.clone();
            force.crime_people.push(CrimePerson {
                crime_reference: crime.crime_reference.clone(),
                person_id: person_id.clone(),
                role,
            });
            if role == "suspect" && rng.chance(0.55) {
                custody_seq += 1;
                let arrived_at = crime.recorded_at + Duration::minutes(60 + rng.below(4320) as i64);
                let released = rng.chance(0.95);
                force.custody.push(CustodyRecord {
                    custody_id: format!("CUS-{custody_seq:06}"),
                    person_id,
                    crime_reference: crime.crime_reference.clone(),
                    arrived_at,
                    released_at: released
                        .then(|| arrived_at + Duration::minutes(120 + rng.below(2000) as i64)),
                    station: rng.choose(STATIONS),
                    disposal: if released {
                        rng.choose(DISPOSALS)
                    } else {
                        "In custody"
                    },
                });
            }
        }
    }

    progress("ANPR reads");
    let mut rng = root.fork("anpr");
    let cameras: Vec<(Arc<str>, f64, f64)> = (0..60)
        .map(|i| {
            let (lat, lon) = point(&mut rng);
            (Arc::from(format!("CAM{:03}", i + 1)), lat, lon)
        })
        .collect();
    let fleet: Vec<Arc<str>> = (0..scaled(40_000.0, scale))
        .map(|_| Arc::from(plate(&mut rng)))
        .collect();
    let reads = scaled(1_000_000.0, scale);
    // Once, not by doubling: at scale 100 a doubling would briefly hold
    // both copies of several GiB.
    force.anpr.reserve(reads);
    let mut read_id = 0i64;
    // Vehicles from incidents pass the camera nearest the incident around its time.
    for (vehicle, at, lat, lon) in &vehicles {
        let registration: Arc<str> = Arc::from(vehicle.as_str());
        let nearest = cameras
            .iter()
            .min_by(|a, b| {
                let da = (a.1 - lat).powi(2) + (a.2 - lon).powi(2);
                let db = (b.1 - lat).powi(2) + (b.2 - lon).powi(2);
                da.total_cmp(&db)
            })
            .map_or(&cameras[0], |c| c);
        for _ in 0..(1 + rng.below(3)) {
            read_id += 1;
            let offset = rng.below(3600) as i64 - 1800;
            force.anpr.push(AnprRead {
                read_id,
                plate: Arc::clone(&registration),
                camera_id: nearest.0.clone(),
                seen_at: (*at + Duration::seconds(offset)).max(start),
                lat: nearest.1,
                lon: nearest.2,
            });
        }
    }
    while force.anpr.len() < reads {
        read_id += 1;
        let camera = rng.pick(&cameras);
        force.anpr.push(AnprRead {
            read_id,
            plate: rng.pick(&fleet).clone(),
            camera_id: camera.0.clone(),
            seen_at: start + Duration::seconds(rng.below((DAYS * 86_400) as u64) as i64),
            lat: camera.1,
            lon: camera.2,
        });
    }
    // Read ids are unique, so the order is total; unstable sorting needs no
    // second copy of the reads.
    force
        .anpr
        .sort_unstable_by(|a, b| a.seen_at.cmp(&b.seen_at).then(a.read_id.cmp(&b.read_id)));

    progress("stop and search");
    let mut rng = root.fork("stops");
    for i in 0..scaled(3_000.0, scale) {
        let (lat, lon) = point(&mut rng);
        force.stops.push(StopSearch {
            id: i as i64 + 1,
            datetime: start + Duration::seconds(rng.below((DAYS * 86_400) as u64) as i64),
            age_range: AGE_RANGES[rng.weighted(&[1, 20, 35, 25, 19])],
            gender: GENDERS[rng.weighted(&[80, 19, 1])],
            legislation: rng.choose(LEGISLATION),
            object_of_search: rng.choose(OBJECTS),
            search_type: rng.choose(SEARCH_TYPES),
            outcome: STOP_OUTCOMES[rng.weighted(&[70, 12, 8, 6, 4])],
            beat: beat_of(lat, lon),
            lat,
            lon,
        });
    }
    force
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn same_seed_same_force() {
        let a = generate(42, 0.02, |_| {});
        let b = generate(42, 0.02, |_| {});
        assert_eq!(a.incidents, b.incidents);
        assert_eq!(a.crimes, b.crimes);
        assert_eq!(a.anpr, b.anpr);
        let c = generate(43, 0.02, |_| {});
        assert_ne!(a.incidents, c.incidents);
    }

    #[test]
    fn links_hold_across_systems() {
        let force = generate(7, 0.05, |_| {});
        let urns: HashSet<&str> = force.incidents.iter().map(|i| i.urn.as_str()).collect();
        assert_eq!(urns.len(), force.incidents.len(), "URNs are unique");
        assert!(
            force
                .incident_log
                .iter()
                .all(|l| urns.contains(l.urn.as_str()))
        );
        assert!(
            force
                .assignments
                .iter()
                .all(|a| urns.contains(a.urn.as_str()))
        );
        assert!(
            force
                .crimes
                .iter()
                .all(|c| urns.contains(c.incident_urn.as_str()))
        );
        let crns: HashSet<&str> = force
            .crimes
            .iter()
            .map(|c| c.crime_reference.as_str())
            .collect();
        let people: HashSet<&str> = force.people.iter().map(|p| p.person_id.as_str()).collect();
        assert!(
            force
                .crime_people
                .iter()
                .all(|l| crns.contains(l.crime_reference.as_str())
                    && people.contains(l.person_id.as_str()))
        );
        assert!(
            force
                .custody
                .iter()
                .all(|c| crns.contains(c.crime_reference.as_str()))
        );
        // Custody records are for suspects of that crime.
        let suspects: HashSet<(&str, &str)> = force
            .crime_people
            .iter()
            .filter(|l| l.role == "suspect")
            .map(|l| (l.crime_reference.as_str(), l.person_id.as_str()))
            .collect();
        assert!(
            force
                .custody
                .iter()
                .all(|c| suspects.contains(&(c.crime_reference.as_str(), c.person_id.as_str())))
        );
        // Some closed crime incidents still lack a crime reference (for the deposit workflow).
        assert!(force.incidents.iter().any(|i| i.status == "closed"
            && i.opening_code.starts_with("Crime")
            && i.crime_reference.is_none()));
        assert!(force.crimes.iter().any(|c| c.restricted));
        // Incident vehicles are seen by ANPR.
        let plates: HashSet<&str> = force.anpr.iter().map(|r| &*r.plate).collect();
        assert!(
            force
                .incidents
                .iter()
                .filter_map(|i| i.vehicle_registration.as_deref())
                .all(|p| plates.contains(p))
        );
    }

    #[test]
    fn sizes_scale_linearly() {
        let force = generate(1, 0.1, |_| {});
        assert_eq!(force.incidents.len(), 5_000);
        assert_eq!(force.people.len(), 2_000);
        assert_eq!(force.anpr.len(), 100_000);
        assert_eq!(force.stops.len(), 300);
        assert!(
            (1_000..2_000).contains(&force.crimes.len()),
            "{}",
            force.crimes.len()
        );
    }
}
