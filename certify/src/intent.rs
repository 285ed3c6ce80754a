//! Tier 1, intent: a supplier declares the bi-directional interfaces it will
//! publish and by when. `bluelamp certify intent FILE` checks the
//! declaration, naming the file, line and field of each mistake, and prints
//! the entry for the register.
//!
//! ```toml
//! supplier = "Acme Policing Ltd"
//! product = "Acme RMS"
//! version = "4.2"
//! contact = "interop@acme.example"       # an email address or an https URL
//! target_date = "2027-03-31"             # when the interfaces will be published
//! interface = "openapi"                  # openapi | asyncapi | graphql | soap | other
//!
//! [[entity]]
//! name = "crime"
//! retrieve = true
//! deposit = true
//! ```

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::located::{from_toml, line_of};
use crate::report::sha256_hex;

/// Interface styles a declaration may plan.
pub const STYLES: &[&str] = &["openapi", "asyncapi", "graphql", "soap", "other"];

/// A mistake in a declaration, located.
pub type IntentError = crate::located::FileError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    supplier: Spanned<String>,
    product: Spanned<String>,
    version: Spanned<String>,
    contact: Spanned<String>,
    target_date: Spanned<String>,
    interface: Spanned<String>,
    #[serde(default, rename = "entity")]
    entities: Vec<RawEntity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    name: Spanned<String>,
    #[serde(default)]
    retrieve: bool,
    #[serde(default)]
    deposit: bool,
    #[serde(default)]
    description: Option<String>,
}

/// One entity the supplier will expose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    /// Its name (`crime`, `incident`, ...).
    pub name: String,
    /// Whether it will be retrievable.
    pub retrieve: bool,
    /// Whether it will take deposits.
    pub deposit: bool,
    /// What it is, where the declaration says.
    pub description: Option<String>,
}

/// A checked declaration: the register's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Always 1.
    pub tier: u8,
    /// The supplier.
    pub supplier: String,
    /// The product.
    pub product: String,
    /// The product's version.
    pub version: String,
    /// Who to ask: an email address or an https URL.
    pub contact: String,
    /// When the interfaces will be published (`YYYY-MM-DD`).
    pub target_date: String,
    /// The planned interface style.
    pub interface: String,
    /// The entities, in the declaration's order.
    pub entities: Vec<Entity>,
    /// SHA-256 of the declaration's bytes.
    pub declaration_sha256: String,
    /// The Bluelamp version that checked it.
    pub bluelamp_version: String,
}

impl Entry {
    /// The entry as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "# Intent to publish bi-directional interfaces (tier 1)\n\n\
             - Supplier: {}\n- Product: {} {}\n- Interfaces published by: {}\n- Interface style: {}\n- Contact: {}\n- Declaration SHA-256: `{}`\n\n\
             | entity | retrieve | deposit |\n|---|---|---|\n",
            self.supplier,
            self.product,
            self.version,
            self.target_date,
            self.interface,
            self.contact,
            self.declaration_sha256
        );
        let yes = |b: bool| if b { "yes" } else { "no" };
        for e in &self.entities {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                e.name,
                yes(e.retrieve),
                yes(e.deposit)
            ));
        }
        out
    }
}

/// Checks a declaration's text, read from `file`, against `today`.
///
/// # Errors
/// Every mistake found, each naming the file, line and field.
pub fn check(text: &str, file: &str, today: NaiveDate) -> Result<Entry, Vec<IntentError>> {
    let error = |span: std::ops::Range<usize>, field: &str, message: String| IntentError {
        file: file.to_string(),
        line: line_of(text, span.start),
        field: field.to_string(),
        message,
    };
    let raw: Raw = from_toml(text, file, "declaration").map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    for (field, value) in [
        ("supplier", &raw.supplier),
        ("product", &raw.product),
        ("version", &raw.version),
    ] {
        if value.get_ref().trim().is_empty() {
            errors.push(error(value.span(), field, "is empty".into()));
        }
    }
    let contact = raw.contact.get_ref().trim();
    let is_email = contact.split_once('@').is_some_and(|(who, domain)| {
        !who.is_empty() && domain.contains('.') && !contact.contains(' ')
    });
    if !is_email && !contact.starts_with("https://") {
        errors.push(error(
            raw.contact.span(),
            "contact",
            format!("'{contact}' is neither an email address nor an https URL"),
        ));
    }
    match NaiveDate::parse_from_str(raw.target_date.get_ref().trim(), "%Y-%m-%d") {
        Ok(date) if date < today => errors.push(error(
            raw.target_date.span(),
            "target_date",
            format!(
                "{date} is in the past: give the date by which the interfaces will be published"
            ),
        )),
        Ok(_) => {}
        Err(_) => errors.push(error(
            raw.target_date.span(),
            "target_date",
            format!(
                "'{}' is not a date: write it as YYYY-MM-DD",
                raw.target_date.get_ref()
            ),
        )),
    }
    let style = raw.interface.get_ref().trim().to_ascii_lowercase();
    if !STYLES.contains(&style.as_str()) {
        errors.push(error(
            raw.interface.span(),
            "interface",
            format!(
                "'{}' is not an interface style: use one of {}",
                raw.interface.get_ref(),
                STYLES.join(", ")
            ),
        ));
    }
    if raw.entities.is_empty() {
        errors.push(IntentError {
            file: file.to_string(),
            line: line_of(text, text.len()),
            field: "entity".into(),
            message: "no [[entity]]: name each entity the interfaces will retrieve and deposit"
                .into(),
        });
    }
    let mut seen: Vec<String> = Vec::new();
    for (i, entity) in raw.entities.iter().enumerate() {
        let name = entity.name.get_ref().trim();
        let field = format!("entity[{}].name", i + 1);
        if name.is_empty() {
            errors.push(error(entity.name.span(), &field, "is empty".into()));
        } else if seen.contains(&name.to_ascii_lowercase()) {
            errors.push(error(
                entity.name.span(),
                &field,
                format!("'{name}' is declared twice"),
            ));
        }
        seen.push(name.to_ascii_lowercase());
        if !entity.retrieve && !entity.deposit {
            errors.push(error(
                entity.name.span(),
                &format!("entity[{}]", i + 1),
                format!("'{name}' is neither retrieved nor deposited: set retrieve and/or deposit = true"),
            ));
        }
    }
    if !raw.entities.is_empty() && !raw.entities.iter().any(|e| e.retrieve && e.deposit) {
        errors.push(error(
            raw.entities[0].name.span(),
            "entity",
            "no entity is both retrieved and deposited: tier 1 is intent to publish bi-directional interfaces".into(),
        ));
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(errors);
    }
    Ok(Entry {
        tier: 1,
        supplier: raw.supplier.into_inner().trim().to_string(),
        product: raw.product.into_inner().trim().to_string(),
        version: raw.version.into_inner().trim().to_string(),
        contact: contact.to_string(),
        target_date: raw.target_date.into_inner().trim().to_string(),
        interface: style,
        entities: raw
            .entities
            .into_iter()
            .map(|e| Entity {
                name: e.name.into_inner().trim().to_string(),
                retrieve: e.retrieve,
                deposit: e.deposit,
                description: e.description,
            })
            .collect(),
        declaration_sha256: sha256_hex(text.as_bytes()),
        bluelamp_version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const GOOD: &str = r#"supplier = "Acme Policing Ltd"
product = "Acme RMS"
version = "4.2"
contact = "interop@acme.example"
target_date = "2027-03-31"
interface = "OpenAPI"

[[entity]]
name = "crime"
retrieve = true
deposit = true

[[entity]]
name = "person"
retrieve = true
"#;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 3).unwrap()
    }

    #[test]
    fn a_good_declaration_is_an_entry() {
        let entry = check(GOOD, "acme.toml", today()).unwrap();
        assert_eq!(entry.tier, 1);
        assert_eq!(entry.interface, "openapi");
        assert_eq!(entry.entities.len(), 2);
        assert!(entry.entities[1].retrieve && !entry.entities[1].deposit);
        assert_eq!(entry.declaration_sha256, sha256_hex(GOOD.as_bytes()));
        let markdown = entry.to_markdown();
        assert!(markdown.contains("| crime | yes | yes |"), "{markdown}");
        assert!(markdown.contains("| person | yes | no |"), "{markdown}");
    }

    #[test]
    fn mistakes_name_file_line_and_field() {
        let bad = GOOD
            .replace("interop@acme.example", "call us")
            .replace("2027-03-31", "2025-01-01")
            .replace("\"OpenAPI\"", "\"fax\"")
            .replace("name = \"person\"\nretrieve = true", "name = \"crime\"");
        let errors = check(&bad, "acme.toml", today()).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "acme.toml:4: contact: 'call us' is neither an email address nor an https URL",
                "acme.toml:5: target_date: 2025-01-01 is in the past: give the date by which the interfaces will be published",
                "acme.toml:6: interface: 'fax' is not an interface style: use one of openapi, asyncapi, graphql, soap, other",
                "acme.toml:14: entity[2].name: 'crime' is declared twice",
                "acme.toml:14: entity[2]: 'crime' is neither retrieved nor deposited: set retrieve and/or deposit = true",
            ]
        );
        let not_a_date = GOOD.replace("2027-03-31", "31/03/2027");
        let errors = check(&not_a_date, "acme.toml", today()).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "acme.toml:5: target_date: '31/03/2027' is not a date: write it as YYYY-MM-DD"
        );
    }

    #[test]
    fn missing_and_unknown_fields_and_one_way_entities() {
        let missing = GOOD.replace("contact = \"interop@acme.example\"\n", "");
        let e = check(&missing, "acme.toml", today()).unwrap_err();
        assert_eq!(e[0].field, "contact", "{e:?}");
        assert!(e[0].message.contains("missing field"), "{e:?}");
        let unknown = GOOD.replace("version = \"4.2\"", "version = \"4.2\"\nprice = 3");
        let e = check(&unknown, "acme.toml", today()).unwrap_err();
        assert_eq!(e[0].line, 4, "{e:?}");
        assert!(e[0].message.contains("price"), "{e:?}");
        let one_way = GOOD.replace("deposit = true", "deposit = false");
        let e = check(&one_way, "acme.toml", today()).unwrap_err();
        assert!(
            e[0].message
                .contains("no entity is both retrieved and deposited"),
            "{e:?}"
        );
        assert_eq!(e[0].line, 9);
    }
}
