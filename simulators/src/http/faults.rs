//! Fault injection, off by default: what a real supplier system does on a bad day.
//!
//! Written as `--faults "latency=50ms,errors=0.1,burst429=3,reset=0.05,malformed=0.05,drift=extra+missing+wrongtype,seed=7"`.
//! `SYSTEM:doc-BREAK` entries make one system break its own documentation,
//! for `bluelamp certify` to catch (see [`BREAKS`]): `rms:doc-wrong-type`,
//! `rms:doc-ignore-filter`, `rms:doc-repeat-page`, `rms:doc-skip-record`,
//! `rms:doc-no-post`, `rms:doc-drop-deposits`, `rms:doc-deposit-500`,
//! `rms:doc-no-retry-after`. (`break=a+b` applies the same breaks to
//! whichever system is started with it.)
//! Writes can also be failed by number: `fail_writes=57-59` answers the 57th
//! to 59th POST with 500 without acting; `reset_writes=12` acts on the 12th
//! and cuts the connection before the answer.
//! Transport faults (latency, 5xx, 429 bursts, resets, malformed pages) apply to
//! data endpoints only, never to `/openapi.*`, `/_stats` or the token endpoint.
//! Which request meets which fault is decided from the request's sequence number
//! and the seed, so a run can be repeated exactly.

use std::str::FromStr;
use std::time::Duration;

use crate::rng::Rng;

/// The faults a simulated system injects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Added to every data response.
    pub latency: Duration,
    /// Share of data requests answered 500 or 503.
    pub error_rate: f64,
    /// Each burst answers this many consecutive requests with 429 and `Retry-After`
    /// (a burst starts every 25 requests).
    pub burst_429: u32,
    /// Share of data responses whose connection is reset half-way through the body.
    pub reset_rate: f64,
    /// Share of data pages sent as truncated, malformed JSON with status 200.
    pub malformed_rate: f64,
    /// Every record carries an extra, undocumented field.
    pub drift_extra: bool,
    /// Every record lacks one optional field entirely.
    pub drift_missing: bool,
    /// One record (the 8th of the dataset) has a field of the wrong type.
    pub drift_wrong_type: bool,
    /// Write requests (POSTs, counted from 1) answered 500 without acting.
    pub fail_writes: Option<(u64, u64)>,
    /// Write requests (POSTs, counted from 1) acted on, then cut off before
    /// the answer arrives: the client cannot know the write happened.
    pub reset_writes: Option<(u64, u64)>,
    /// The RMS crimes list ignores its documented filters (`break=ignore-filter`):
    /// every query answers every crime.
    pub ignore_filters: bool,
    /// The RMS crimes list answers its second page with the first again
    /// (`break=repeat-page`): a walk sees some crimes twice and misses others.
    pub repeat_page: bool,
    /// The RMS document leaves out its create operation (`break=no-post`):
    /// crimes can be retrieved but, as documented, not deposited.
    pub no_post: bool,
    /// An RMS list read without filters leaves out the record that would
    /// open its second page (`break=skip-record`): a walk misses a record,
    /// and which one depends on the page size.
    pub skip_record: bool,
    /// RMS answers `POST /crimes` with 201 and a new crime reference, but
    /// never stores the crime (`break=drop-deposits`).
    pub drop_deposits: bool,
    /// RMS answers every `POST /crimes` with 500, which its document does
    /// not list (`break=deposit-500`).
    pub deposit_500: bool,
    /// RMS answers 429 without `Retry-After`, which its document promises
    /// (`break=no-retry-after`).
    pub no_retry_after: bool,
    /// `SYSTEM:doc-BREAK` entries, applied by [`Faults::for_system`].
    pub scoped: Vec<(String, String)>,
    /// Seed for deciding which requests fail.
    pub seed: u64,
}

/// What the fault plan says to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Serve normally.
    Serve,
    /// Answer with this 5xx status.
    ServerError(u16),
    /// Answer 429 with `Retry-After: 1`.
    TooManyRequests,
    /// Reset the connection mid-body.
    Reset,
    /// Send a truncated JSON body with status 200.
    Malformed,
}

/// The ways a system can break its documentation, each `(name, what it
/// does)`; written `SYSTEM:doc-NAME` (only `rms` has them).
pub const BREAKS: &[(&str, &str)] = &[
    ("wrong-type", "a record has a field of the wrong type"),
    (
        "ignore-filter",
        "the crimes list ignores its documented filters",
    ),
    (
        "repeat-page",
        "a list answers its second page with the first again",
    ),
    (
        "skip-record",
        "a walk without filters misses the record that opens page 2",
    ),
    ("no-post", "the document leaves out POST /crimes"),
    (
        "drop-deposits",
        "POST /crimes answers 201 but never stores the crime",
    ),
    ("deposit-500", "POST /crimes answers an undocumented 500"),
    (
        "no-retry-after",
        "429 answers lack their documented Retry-After",
    ),
];

/// Systems that can break their documentation.
const BREAKABLE: &[&str] = &["rms"];

impl Faults {
    /// Sets the break called `name` (without its `doc-`).
    fn set_break(&mut self, name: &str) -> Result<(), String> {
        match name {
            "wrong-type" => self.drift_wrong_type = true,
            "ignore-filter" => self.ignore_filters = true,
            "repeat-page" => self.repeat_page = true,
            "skip-record" => self.skip_record = true,
            "no-post" => self.no_post = true,
            "drop-deposits" => self.drop_deposits = true,
            "deposit-500" => self.deposit_500 = true,
            "no-retry-after" => self.no_retry_after = true,
            other => {
                let names: Vec<&str> = BREAKS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown break '{other}' (use {})",
                    names.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The faults system `name` applies: these, with the `name:doc-...`
    /// entries set and every other system's left out.
    pub fn for_system(&self, name: &str) -> Self {
        let mut out = Self {
            scoped: Vec::new(),
            ..self.clone()
        };
        for (system, brk) in &self.scoped {
            if system == name {
                // Checked when parsed.
                let _ = out.set_break(brk);
            }
        }
        out
    }

    /// No faults at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether any fault is configured.
    pub fn any(&self) -> bool {
        *self
            != Self {
                seed: self.seed,
                ..Self::default()
            }
    }

    /// The action for the `n`-th write request (counting from 1), before the
    /// general faults.
    pub fn write_action(&self, n: u64) -> Option<Action> {
        let within = |range: Option<(u64, u64)>| range.is_some_and(|(a, b)| (a..=b).contains(&n));
        if within(self.fail_writes) {
            Some(Action::ServerError(500))
        } else if within(self.reset_writes) {
            Some(Action::Reset)
        } else {
            None
        }
    }

    /// The action for the `n`-th data request (counting from 0).
    pub fn action(&self, n: u64) -> Action {
        if self.burst_429 > 0 && (n % 25) >= 5 && (n % 25) < 5 + u64::from(self.burst_429) {
            return Action::TooManyRequests;
        }
        let mut rng = Rng::new(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let roll = rng.unit();
        let mut edge = self.error_rate;
        if roll < edge {
            return Action::ServerError(if n.is_multiple_of(2) { 500 } else { 503 });
        }
        edge += self.reset_rate;
        if roll < edge {
            return Action::Reset;
        }
        edge += self.malformed_rate;
        if roll < edge {
            return Action::Malformed;
        }
        Action::Serve
    }
}

impl FromStr for Faults {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut faults = Faults::default();
        let text = text.trim();
        if text.is_empty() || text == "none" {
            return Ok(faults);
        }
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((system, rest)) = part.split_once(':')
                && !part.contains('=')
            {
                let system = system.trim();
                let brk = rest.trim().strip_prefix("doc-").ok_or_else(|| {
                    format!("'{part}': write a system's break as {system}:doc-NAME, e.g. rms:doc-wrong-type")
                })?;
                if !BREAKABLE.contains(&system) {
                    return Err(format!(
                        "'{part}': only {} can break its documentation",
                        BREAKABLE.join(", ")
                    ));
                }
                // Checked now, so a typo fails here rather than at start.
                Faults::default().set_break(brk)?;
                faults.scoped.push((system.to_string(), brk.to_string()));
                continue;
            }
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("fault '{part}' needs a value, e.g. errors=0.1"))?;
            let rate = |v: &str| -> Result<f64, String> {
                let r: f64 = v
                    .parse()
                    .map_err(|_| format!("{key}: '{v}' is not a number"))?;
                if (0.0..=1.0).contains(&r) {
                    Ok(r)
                } else {
                    Err(format!("{key}: {v} must be between 0 and 1"))
                }
            };
            match key.trim() {
                "latency" => faults.latency = parse_duration(value)?,
                "errors" => faults.error_rate = rate(value)?,
                "reset" => faults.reset_rate = rate(value)?,
                "malformed" => faults.malformed_rate = rate(value)?,
                "burst429" => {
                    faults.burst_429 =
                        value.parse().ok().filter(|n| *n <= 20).ok_or_else(|| {
                            format!("burst429: '{value}' must be a whole number from 0 to 20")
                        })?;
                }
                "fail_writes" => faults.fail_writes = Some(parse_range(key, value)?),
                "reset_writes" => faults.reset_writes = Some(parse_range(key, value)?),
                "seed" => {
                    faults.seed = value
                        .parse()
                        .map_err(|_| format!("seed: '{value}' is not a number"))?
                }
                "break" => {
                    for part in value.split('+') {
                        faults.set_break(part.trim())?;
                    }
                }
                "drift" => {
                    for kind in value.split('+').map(str::trim) {
                        match kind {
                            "extra" => faults.drift_extra = true,
                            "missing" => faults.drift_missing = true,
                            "wrongtype" => faults.drift_wrong_type = true,
                            other => {
                                return Err(format!(
                                    "unknown drift '{other}' (use extra, missing, wrongtype)"
                                ));
                            }
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown fault '{other}' (use latency, errors, burst429, reset, malformed, drift, break, seed)"
                    ));
                }
            }
        }
        if faults.error_rate + faults.reset_rate + faults.malformed_rate > 1.0 {
            return Err("errors + reset + malformed must not add up to more than 1".into());
        }
        Ok(faults)
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 0.001)
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("latency: '{text}' is not a duration like 50ms"))?;
    if !(0.0..=60.0).contains(&(value * scale)) {
        return Err(format!("latency: {text} must be between 0 and 60s"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// `N` or `A-B` (inclusive, from 1).
fn parse_range(key: &str, value: &str) -> Result<(u64, u64), String> {
    let number = |v: &str| {
        v.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{key}: '{value}' must be N or A-B, counting writes from 1"))
    };
    let (a, b) = match value.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let n = number(value)?;
            (n, n)
        }
    };
    if a > b {
        return Err(format!("{key}: '{value}' runs backwards"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fault() {
        let f: Faults = "latency=20ms,errors=0.1,burst429=3,reset=0.05,malformed=0.02,drift=extra+missing+wrongtype,seed=9"
            .parse()
            .unwrap();
        assert_eq!(f.latency, Duration::from_millis(20));
        assert_eq!(f.burst_429, 3);
        assert!(f.drift_extra && f.drift_missing && f.drift_wrong_type);
        assert!(f.any());
        assert!(!Faults::none().any());
        assert!("errors=2".parse::<Faults>().is_err());
        assert!("bogus=1".parse::<Faults>().is_err());
        assert!("drift=sideways".parse::<Faults>().is_err());
    }

    #[test]
    fn breaks_are_scoped_to_their_system() {
        let f: Faults = "rms:doc-drop-deposits, rms:doc-no-retry-after,latency=5ms"
            .parse()
            .unwrap();
        let rms = f.for_system("rms");
        assert!(rms.drop_deposits && rms.no_retry_after && !rms.deposit_500);
        assert_eq!(rms.latency, Duration::from_millis(5));
        let cad = f.for_system("cad");
        assert!(!cad.drop_deposits && !cad.no_retry_after);
        assert_eq!(cad.latency, Duration::from_millis(5));
        for bad in ["rms:wrong-type", "cad:doc-wrong-type", "rms:doc-sideways"] {
            assert!(bad.parse::<Faults>().is_err(), "{bad}");
        }
        for (name, _) in BREAKS {
            let f: Faults = format!("rms:doc-{name}").parse().unwrap();
            assert!(f.for_system("rms").any(), "{name}");
        }
    }

    #[test]
    fn no_faults_never_fire() {
        let f = Faults::none();
        assert!((0..10_000).all(|n| f.action(n) == Action::Serve));
    }

    #[test]
    fn rates_fire_roughly_as_configured() {
        let f: Faults = "errors=0.1,reset=0.1,malformed=0.1".parse().unwrap();
        let count = |a: fn(Action) -> bool| (0..10_000).filter(|n| a(f.action(*n))).count();
        for n in [
            count(|a| matches!(a, Action::ServerError(_))),
            count(|a| a == Action::Reset),
            count(|a| a == Action::Malformed),
        ] {
            assert!((800..1200).contains(&n), "{n}");
        }
        let bursts: Faults = "burst429=3".parse().unwrap();
        let hits: Vec<u64> = (0..50)
            .filter(|n| bursts.action(*n) == Action::TooManyRequests)
            .collect();
        assert_eq!(hits, vec![5, 6, 7, 30, 31, 32]);
    }
}
