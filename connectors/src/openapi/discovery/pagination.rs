//! How a list operation pages: the parameter, body-field and header names
//! that give each style away, the detection from an operation's parameters
//! and response, and the pagination a source's configuration sets instead.

use arrow::datatypes::Field;
use serde_json::Value;

use crate::openapi::config::PaginationConfig;
use crate::openapi::schema::Shape;
use crate::openapi::spec::Document;

use super::merged_properties;
use super::params::Param;
use super::table::{CursorAt, Pagination, RecordsAt};

const CURSOR_PARAMS: &[&str] = &[
    "cursor",
    "page_token",
    "pageToken",
    "next_token",
    "nextToken",
    "after",
    "continuation",
    "continuationToken",
    "starting_after",
    "next_page",
    "nextPage",
];
pub(crate) const CURSOR_FIELDS: &[&str] = &[
    "next_cursor",
    "nextCursor",
    "continuation",
    "continuationToken",
    "next_page_token",
    "nextPageToken",
    "next_token",
    "nextToken",
    "cursor",
];
pub(crate) const NEXT_LINK_FIELDS: &[&str] = &[
    "next",
    "next_url",
    "nextUrl",
    "next_link",
    "nextLink",
    "next_page",
    "nextPage",
];
const SIZE_PARAMS: &[&str] = &[
    "limit",
    "page_size",
    "pageSize",
    "per_page",
    "perPage",
    "size",
    "count",
    "top",
];

fn query<'a>(params: &'a [Param], names: &[&str]) -> Option<&'a Param> {
    names.iter().find_map(|n| {
        params
            .iter()
            .find(|p| p.location == "query" && p.name == *n)
    })
}

fn maximum(param: Option<&Param>) -> Option<u64> {
    param
        .and_then(|p| p.schema.get("maximum"))
        .and_then(Value::as_u64)
}

/// Response headers that carry the next page's token.
pub(crate) const CURSOR_HEADERS: &[&str] = &[
    "x-next-page-token",
    "x-next-cursor",
    "x-next-token",
    "x-continuation-token",
    "x-ms-continuation",
    "next-page-token",
    "x-next-page-cursor",
];

/// How a list operation pages, read from its parameters, its response body
/// and its response headers; an error where the document shows more pages
/// exist but not how to ask for them.
pub(super) fn detect_pagination(
    doc: &Document,
    params: &[Param],
    body: &Value,
    response: &Value,
    records: &RecordsAt,
    columns: &[(Field, Shape)],
) -> Result<Pagination, String> {
    let headers: Vec<String> = response
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| h.keys().map(|k| k.to_ascii_lowercase()).collect())
        .unwrap_or_default();
    if headers.iter().any(|k| k == "link") {
        return Ok(Pagination::LinkHeader);
    }
    let body_fields: Vec<(String, Value)> = match records {
        RecordsAt::Root | RecordsAt::Object => Vec::new(),
        RecordsAt::Field(_) => merged_properties(doc, body)
            .into_iter()
            .map(|(name, schema)| {
                let schema = doc
                    .resolve(&schema)
                    .map(|(s, _)| s.clone())
                    .unwrap_or(Value::Null);
                (name, schema)
            })
            .collect(),
    };
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| body_fields.iter().find(|(b, _)| b == n))
    };
    let size = query(params, SIZE_PARAMS);
    let cursor = query(params, CURSOR_PARAMS);
    if let Some(cursor) = cursor {
        if let Some(header) = CURSOR_HEADERS
            .iter()
            .find(|h| headers.iter().any(|k| k == *h))
        {
            return Ok(Pagination::Cursor {
                param: cursor.name.clone(),
                field: CursorAt::Header((*header).to_string()),
                size: size.map(|p| p.name.clone()),
                max: maximum(size),
            });
        }
        if let Some((name, _)) = field(CURSOR_FIELDS) {
            return Ok(Pagination::Cursor {
                param: cursor.name.clone(),
                field: CursorAt::Body(name.clone()),
                size: size.map(|p| p.name.clone()),
                max: maximum(size),
            });
        }
        // `next_page` may be a token to pass back rather than a URL: it is a
        // URL only when the document says so.
        if let Some((name, schema)) = field(NEXT_LINK_FIELDS)
            && !is_uri(schema)
        {
            return Ok(Pagination::Cursor {
                param: cursor.name.clone(),
                field: CursorAt::Body(name.clone()),
                size: size.map(|p| p.name.clone()),
                max: maximum(size),
            });
        }
    }
    if let Some((name, _)) = field(NEXT_LINK_FIELDS) {
        return Ok(Pagination::NextLink {
            field: name.clone(),
        });
    }
    if let Some((more, _)) = field(&["has_more", "hasMore", "more"]) {
        let after = query(params, &["starting_after", "after", "after_id", "since_id"]);
        let key = ["id", "uuid", "key"]
            .into_iter()
            .find(|k| columns.iter().any(|(f, _)| f.name() == *k));
        return match (after, key) {
            (Some(after), Some(key)) => Ok(Pagination::AfterLast {
                param: after.name.clone(),
                key: key.to_string(),
                more: more.clone(),
                size: size.map(|p| p.name.clone()),
                max: maximum(size),
            }),
            _ => Err(format!(
                "the answer says whether there are more records ('{more}') but the document names no parameter to ask for them"
            )),
        };
    }
    if let (Some(offset), Some(limit)) = (
        query(params, &["offset", "skip", "start"]),
        query(params, &["limit", "top", "take", "count"]),
    ) {
        return Ok(Pagination::Offset {
            offset: offset.name.clone(),
            limit: limit.name.clone(),
            max: maximum(Some(limit)),
        });
    }
    if let Some(page) = query(params, &["page", "page_number", "pageNumber"]) {
        return Ok(Pagination::Page {
            page: page.name.clone(),
            size: query(
                params,
                &[
                    "page_size",
                    "pageSize",
                    "per_page",
                    "perPage",
                    "size",
                    "limit",
                ],
            )
            .map(|p| p.name.clone()),
        });
    }
    if let Some((name, _)) = field(CURSOR_FIELDS) {
        return Err(format!(
            "the answer carries a next-page cursor ('{name}') but the document names no parameter to pass it back"
        ));
    }
    Ok(Pagination::None)
}

/// Whether a schema says its string is a URL.
fn is_uri(schema: &Value) -> bool {
    matches!(
        schema.get("format").and_then(Value::as_str),
        Some("uri" | "url" | "uri-reference" | "iri" | "iri-reference")
    ) || schema
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|d| {
            let d = d.to_ascii_lowercase();
            d.contains("url") || d.contains("uri") || d.contains("link")
        })
}

pub(super) fn from_config(config: &PaginationConfig) -> Pagination {
    match config {
        PaginationConfig::None => Pagination::None,
        PaginationConfig::Offset {
            offset_param,
            limit_param,
        } => Pagination::Offset {
            offset: offset_param.clone(),
            limit: limit_param.clone(),
            max: None,
        },
        PaginationConfig::Page {
            page_param,
            size_param,
        } => Pagination::Page {
            page: page_param.clone(),
            size: size_param.clone(),
        },
        PaginationConfig::Cursor { param, field } => Pagination::Cursor {
            param: param.clone(),
            field: CursorAt::Body(field.clone()),
            size: None,
            max: None,
        },
        PaginationConfig::NextLink { field } => Pagination::NextLink {
            field: field.clone(),
        },
        PaginationConfig::LinkHeader => Pagination::LinkHeader,
    }
}

pub(super) fn pagination_params(p: &Pagination) -> Vec<&str> {
    match p {
        Pagination::None | Pagination::NextLink { .. } | Pagination::LinkHeader => vec![],
        Pagination::Offset { offset, limit, .. } => vec![offset, limit],
        Pagination::Page { page, size } => std::iter::once(page.as_str())
            .chain(size.as_deref())
            .collect(),
        Pagination::Cursor { param, size, .. } | Pagination::AfterLast { param, size, .. } => {
            std::iter::once(param.as_str())
                .chain(size.as_deref())
                .collect()
        }
    }
}
