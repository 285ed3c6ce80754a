//! The demo force's HTTP systems: real servers on loopback ports, each in the
//! style of a different supplier.
//!
//! | system | style |
//! |---|---|
//! | [`cad`] | OpenAPI 3.1 JSON, API-key header, cursor in the body |
//! | [`rms`] | OpenAPI 3.0 YAML, OAuth2 client credentials, offset/limit with a total, rate limit, idempotent deposits |
//! | [`stops`] | data.police.uk style, no auth, page numbers advertised in a `Link` header |
//!
//! Every system counts requests and records at `GET /_stats` (reset with
//! `DELETE /_stats`) and can inject [`Faults`] (changed while it runs with
//! [`RunningSystem::set_faults`]). With [`SystemOptions::live_rate`], C&C
//! and RMS keep adding new incidents and crimes while they run.

pub mod cad;
pub mod faults;
pub mod rms;
mod server;
pub mod stops;

pub use faults::{Action, BREAKS, Faults};
pub use server::{RunningSystem, Stats, SystemKind, SystemOptions, start};

/// Bluelamp config text for a running force: the HTTP systems through their
/// OpenAPI documents (see [`openapi_sources`]), custody and ANPR over the files
/// [`crate::write_force`] wrote. Relative paths (`custody.sqlite`, `anpr`)
/// resolve against the force's folder, so parse the text with that folder as
/// its base.
pub fn live_config(systems: &[RunningSystem], options: &SystemOptions) -> String {
    live_config_with(systems, options, None)
}

/// As [`live_config`], with the HTTP systems' tables accelerated as
/// `accelerate` says (`bluelamp demo --accelerate`).
pub fn live_config_with(
    systems: &[RunningSystem],
    options: &SystemOptions,
    accelerate: Option<&DemoAcceleration>,
) -> String {
    let mut text = String::from("[engine]\nconnect_timeout = \"10s\"\n\n");
    text.push_str(&openapi_sources_with(systems, options, accelerate));
    text.push_str(
        "[[source]]\nname = \"custody\"\nkind = \"sqlite\"\npath = \"custody.sqlite\"\n\n\
         [[source]]\nname = \"anpr\"\nkind = \"files\"\nlocation = \"anpr\"\n",
    );
    text
}

/// How the demo keeps local copies of its HTTP systems' tables.
#[derive(Debug, Clone)]
pub struct DemoAcceleration {
    /// How often each copy is refreshed, e.g. `"1m"`.
    pub refresh: String,
    /// The `[[user]]` the refreshes run as (the systems are told each
    /// request's end user).
    pub as_user: String,
    /// Keep only this much of RMS crimes, by `recorded_at` (`mode =
    /// "window"`, e.g. `"60d"`), rather than all of them.
    pub crimes_window: Option<String>,
}

impl DemoAcceleration {
    /// `[source.tables.NAME.accelerate]` tables for `kind`'s tables that can
    /// be read whole: RMS crimes, which are only ever added, by `append` on
    /// `recorded_at`; the rest (C&C incidents gain crime references in
    /// place) by `full` refresh. Tables read one incident at a time are not
    /// accelerated.
    pub fn tables(&self, kind: SystemKind) -> String {
        let crimes = match &self.crimes_window {
            None => "mode = \"append\"\nkey = \"recorded_at\"\n".to_string(),
            Some(window) => {
                format!("mode = \"window\"\nkey = \"recorded_at\"\nwindow = \"{window}\"\n")
            }
        };
        let tables: Vec<(&str, &str)> = match kind {
            SystemKind::Cad => vec![("incidents", "")],
            SystemKind::Rms => vec![("crimes", &crimes), ("people", ""), ("crime_people", "")],
            SystemKind::Stops => vec![("stops_street", "")],
        };
        tables
            .iter()
            .map(|(table, mode)| {
                format!(
                    "[source.tables.{table}.accelerate]\nrefresh = \"{}\"\n{mode}as_user = \"{}\"\n\n",
                    self.refresh, self.as_user
                )
            })
            .collect()
    }
}

/// `[[source]]` tables for running HTTP systems, each named after its system,
/// with the credentials in `options`; every data request names its end user
/// in `X-On-Behalf-Of`, which the systems count in `/_stats`.
pub fn openapi_sources(systems: &[RunningSystem], options: &SystemOptions) -> String {
    openapi_sources_with(systems, options, None)
}

/// As [`openapi_sources`], with tables accelerated as `accelerate` says.
pub fn openapi_sources_with(
    systems: &[RunningSystem],
    options: &SystemOptions,
    accelerate: Option<&DemoAcceleration>,
) -> String {
    let mut text = String::new();
    for system in systems {
        let auth = match system.kind {
            SystemKind::Cad => format!(
                "{{ type = \"api_key\", name = \"X-API-Key\", value = \"{}\" }}",
                options.cad_api_key
            ),
            SystemKind::Rms => format!(
                "{{ type = \"oauth2\", client_id = \"{}\", client_secret = \"{}\" }}",
                options.rms_client_id, options.rms_client_secret
            ),
            SystemKind::Stops => "{ type = \"none\" }".to_string(),
        };
        text.push_str(&format!(
            "[[source]]\nname = \"{}\"\nkind = \"openapi\"\nspec = \"{}\"\nauth = {auth}\non_behalf_of = \"X-On-Behalf-Of: {{user}}\"\n\n",
            system.kind.name(),
            system.openapi_url()
        ));
        if let Some(accelerate) = accelerate {
            text.push_str(&accelerate.tables(system.kind));
        }
    }
    text
}
