//! What discovery produces: a [`TableSpec`] for each table, and its parts —
//! where the records sit in a response ([`RecordsAt`]), how pages are walked
//! ([`Pagination`], [`CursorAt`]), which path parameters a query must supply
//! ([`PathParam`]) and which query parameters carry filters ([`FilterParam`],
//! [`FilterOp`]).

use std::sync::Arc;

use arrow::datatypes::Field;

use crate::openapi::schema::Shape;
use crate::openapi::write::WriteSpec;

/// Where a response keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsAt {
    /// The body is the array.
    Root,
    /// The body is an object and this property holds the array.
    Field(String),
    /// The body is one record: a lookup table, one row per key.
    Object,
}

/// How a table's pages are walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pagination {
    /// One request returns everything.
    None,
    /// Offset and limit parameters; `total` names a count in the body, if any.
    Offset {
        /// Offset parameter.
        offset: String,
        /// Limit parameter.
        limit: String,
        /// Largest documented limit.
        max: Option<u64>,
    },
    /// Page numbers from 1.
    Page {
        /// Page parameter.
        page: String,
        /// Page-size parameter.
        size: Option<String>,
    },
    /// A cursor from the body (or a response header) passed back as a parameter.
    Cursor {
        /// Parameter that takes it.
        param: String,
        /// Where the next cursor is: a property of the body, or a header.
        field: CursorAt,
        /// Page-size parameter, if any.
        size: Option<String>,
        /// Largest documented page size.
        max: Option<u64>,
    },
    /// `has_more` in the body, and the last record's key passed back as a
    /// parameter (`starting_after`, `after`).
    AfterLast {
        /// Parameter that takes the key.
        param: String,
        /// The record field whose value is passed.
        key: String,
        /// The body's boolean saying more records follow.
        more: String,
        /// Page-size parameter, if any.
        size: Option<String>,
        /// Largest documented page size.
        max: Option<u64>,
    },
    /// The next page's URL in the body.
    NextLink {
        /// Property holding it.
        field: String,
    },
    /// The next page in a `Link` header.
    LinkHeader,
}

impl Pagination {
    /// A short description for `EXPLAIN`.
    pub fn describe(&self) -> String {
        match self {
            Pagination::None => "none".into(),
            Pagination::Offset { .. } => "offset".into(),
            Pagination::Page { .. } => "page".into(),
            Pagination::Cursor { .. } => "cursor".into(),
            Pagination::AfterLast { .. } => "after-last".into(),
            Pagination::NextLink { .. } => "next-link".into(),
            Pagination::LinkHeader => "link-header".into(),
        }
    }

    /// Whether pages can be fetched concurrently (their addresses are known in advance).
    pub fn concurrent(&self) -> bool {
        matches!(self, Pagination::Offset { .. } | Pagination::Page { .. })
    }
}

/// Where a cursor style finds the next cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorAt {
    /// A property of the body.
    Body(String),
    /// A response header.
    Header(String),
}

/// A path parameter and the column that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathParam {
    /// The name in the path template (`id` in `/artists/{id}/top-tracks`).
    pub param: String,
    /// The column a query fills it through: the parameter's own name, or,
    /// where the records have a field of that name, a distinct one taken from
    /// the path (`artist_id`), so a record's field and the path are never
    /// confused.
    pub column: String,
}

/// A comparison a query parameter implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `=` (or `IN` for list parameters).
    Eq,
    /// `>=`.
    Ge,
    /// `>`.
    Gt,
    /// `<=`.
    Le,
    /// `<`.
    Lt,
}

/// A query parameter that filters on a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterParam {
    /// The column.
    pub column: String,
    /// The parameter.
    pub param: String,
    /// What it compares.
    pub op: FilterOp,
    /// Whether it takes a comma-separated list (so `IN` can be pushed).
    pub list: bool,
    /// Most values per request, where documented.
    pub max_items: Option<usize>,
}

/// One table of an OpenAPI source.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// SQL table name.
    pub name: String,
    /// The path template, e.g. `/incidents/{urn}/log`.
    pub path: String,
    /// Path parameters; each is a column a query must supply.
    pub path_params: Vec<PathParam>,
    /// Where the records are in the body.
    pub records: RecordsAt,
    /// Columns and how to prepare their values.
    pub columns: Vec<(Field, Shape)>,
    /// Parameters that carry filters.
    pub filters: Vec<FilterParam>,
    /// How pages are walked.
    pub pagination: Pagination,
    /// Columns identifying a record.
    pub primary_key: Vec<String>,
    /// Whether rows can be read (false for insert-only tables).
    pub readable: bool,
    /// The create operation, for `INSERT`.
    pub write: Option<Arc<WriteSpec>>,
    /// For a lookup table: whether the operation documents `404` for a key
    /// that does not exist (then it is no row, not an error).
    pub missing_is_empty: bool,
}

impl TableSpec {
    /// `GET /path`, for messages.
    pub fn endpoint(&self) -> String {
        format!("GET {}", self.path)
    }

    /// The path parameter a column carries, if it carries one.
    pub fn path_param(&self, column: &str) -> Option<&PathParam> {
        self.path_params.iter().find(|p| p.column == column)
    }
}

/// Field metadata that `\\d` shows beside a column (what a path column is).
pub const NOTE_KEY: &str = "bluelamp.note";
