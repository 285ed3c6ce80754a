//! Following a table's pagination style from page to page (none, offset,
//! page number, cursor, after-last key, next link or `Link` header), with the
//! checks that stop a walk which loops or would end short.

use arrow::array::RecordBatch;
use datafusion::error::{DataFusionError, Result as DFResult};
use futures::StreamExt;
use reqwest::Url;
use tokio::sync::mpsc;

use super::{PageInfo, Scan};
use crate::openapi::discovery::Pagination;
use crate::openapi::exec::{PageStripe, abbreviate};
use crate::openapi::requests::RequestSet;

const DEFAULT_PAGE: u64 = 100;

impl Scan {
    fn url(&self, set: &RequestSet, extra: &[(String, String)]) -> DFResult<Url> {
        let base = self.base.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}{}", set.path))
            .map_err(|e| self.error(format!("{}: bad URL: {e}", self.table.endpoint()), false))?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in set.query.iter().chain(extra) {
                pairs.append_pair(k, v);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    /// `set`'s URL for the page of `size` records at `at`, through the
    /// parameters named `offset` and `limit`.
    fn offset_url(
        &self,
        set: &RequestSet,
        (offset, at): (&str, u64),
        (limit, size): (&str, u64),
    ) -> DFResult<Url> {
        self.url(
            set,
            &[
                (offset.to_string(), at.to_string()),
                (limit.to_string(), size.to_string()),
            ],
        )
    }

    fn page_size(&self, remaining: Option<usize>, max: Option<u64>) -> u64 {
        let wanted = self.page_size.or(max).unwrap_or(DEFAULT_PAGE);
        let capped = max.map_or(wanted, |m| wanted.min(m));
        match remaining {
            Some(r) => capped.min(r.max(1) as u64),
            None => capped,
        }
    }

    /// The parameters of a page after a token (a cursor, a last key): the
    /// page size where the interface takes one, and the token after the first.
    fn token_params(
        &self,
        size: &Option<String>,
        max: Option<u64>,
        remaining: Option<usize>,
        param: &str,
        token: &Option<String>,
    ) -> Vec<(String, String)> {
        let mut extra = Vec::new();
        if let Some(size) = size {
            extra.push((size.clone(), self.page_size(remaining, max).to_string()));
        }
        if let Some(token) = token {
            extra.push((param.to_string(), token.clone()));
        }
        extra
    }

    pub(in crate::openapi) async fn walk(
        &self,
        set: &RequestSet,
        tx: &mpsc::Sender<DFResult<RecordBatch>>,
        remaining: &mut Option<usize>,
    ) -> DFResult<()> {
        let endpoint = self.table.endpoint();
        match &self.table.pagination {
            Pagination::None => {
                let url = self.url(set, &[])?;
                let info = self.page(&url, 1, set, tx, remaining).await?;
                return self.ended(&info, 1, remaining);
            }
            Pagination::Offset { offset, limit, max } => {
                let size = self.page_size(*remaining, *max);
                let first = self.offset_url(set, (offset, 0), (limit, size))?;
                let info = self.page(&first, 1, set, tx, remaining).await?;
                match info.total {
                    // The total says which pages exist: fetch them concurrently, in order.
                    Some(total) if info.records > 0 => {
                        let step = info.records as u64;
                        let offsets: Vec<u64> =
                            (1..).map(|n| n * step).take_while(|o| *o < total).collect();
                        let mut pages =
                            futures::stream::iter(offsets.into_iter().enumerate().map(|(i, o)| {
                                let url = self.offset_url(set, (offset, o), (limit, step));
                                let endpoint = endpoint.clone();
                                async move {
                                    let url = url?;
                                    let fetched = self
                                        .client
                                        .get_json(&url, &endpoint, self.identity.as_ref())
                                        .await
                                        .map_err(|e| self.fetch_error(e))?;
                                    Ok::<_, DataFusionError>((i + 2, fetched))
                                }
                            }))
                            .buffered(4);
                        let mut received = step;
                        while let Some(result) = pages.next().await {
                            if *remaining == Some(0) {
                                return Ok(());
                            }
                            let (number, fetched) = result?;
                            received += self
                                .emit(fetched, number, set, tx, remaining)
                                .await?
                                .records as u64;
                        }
                        // The offsets assumed full pages: one that held fewer
                        // leaves records between it and the next unread.
                        if received < total && *remaining != Some(0) {
                            return Err(self.error(
                                format!(
                                    "{endpoint}: the answer says there are {total} records but its pages held {received}: a page held fewer than the {step} the first did, so records after it were never asked for; the query was stopped rather than return part of the answer"
                                ),
                                true,
                            ));
                        }
                    }
                    _ => {
                        let mut position = info.records as u64;
                        let mut number = 1;
                        let mut last = info.records;
                        let mut seen = std::collections::HashSet::new();
                        self.not_repeated(&mut seen, &info, number)?;
                        // Without a total, only an empty page proves the end: a
                        // server may return fewer than asked for and still have more.
                        while last > 0 && *remaining != Some(0) {
                            number += 1;
                            let url = self.offset_url(set, (offset, position), (limit, size))?;
                            let next = self.page(&url, number, set, tx, remaining).await?;
                            if next.records > 0 {
                                self.not_repeated(&mut seen, &next, number)?;
                            }
                            last = next.records;
                            position += last as u64;
                        }
                    }
                }
            }
            Pagination::Page { page, size } => {
                let per_page = self.page_size(*remaining, None);
                let mut number = 1u64;
                let mut firsts = std::collections::HashSet::new();
                loop {
                    let mut extra = vec![(page.clone(), number.to_string())];
                    if let Some(size) = size {
                        extra.push((size.clone(), per_page.to_string()));
                    }
                    let url = self.url(set, &extra)?;
                    let info = self.page(&url, number as usize, set, tx, remaining).await?;
                    // Servers often cap the page size silently, so only an
                    // empty page proves the end.
                    if info.records == 0 || *remaining == Some(0) {
                        break;
                    }
                    self.not_repeated(&mut firsts, &info, number as usize)?;
                    number += 1;
                }
            }
            Pagination::Cursor {
                param, size, max, ..
            } => {
                let mut cursor: Option<String> = None;
                let mut number = 1;
                let mut seen = std::collections::HashSet::new();
                loop {
                    let extra = self.token_params(size, *max, *remaining, param, &cursor);
                    let url = self.url(set, &extra)?;
                    let info = self.page(&url, number, set, tx, remaining).await?;
                    match info.next_cursor.clone() {
                        Some(next) if !next.is_empty() && *remaining != Some(0) => {
                            if !seen.insert(next.clone()) {
                                return Err(self.error(format!("{endpoint}: page {number} gives a next cursor already used; the query was stopped rather than loop"), true));
                            }
                            cursor = Some(next)
                        }
                        _ => return self.ended(&info, number, remaining),
                    }
                    number += 1;
                }
            }
            Pagination::AfterLast {
                param,
                more,
                size,
                max,
                ..
            } => {
                let mut after: Option<String> = None;
                let mut number = 1;
                let mut seen = std::collections::HashSet::new();
                loop {
                    let extra = self.token_params(size, *max, *remaining, param, &after);
                    let url = self.url(set, &extra)?;
                    let info = self.page(&url, number, set, tx, remaining).await?;
                    if *remaining == Some(0) || info.more.is_none() {
                        return Ok(());
                    }
                    match info.last_key.clone() {
                        Some(key) if info.records > 0 && seen.insert(key.clone()) => {
                            after = Some(key);
                        }
                        _ => {
                            return Err(self.error(format!("{endpoint}: page {number} says '{more}' is true but gives no new last record to continue after; the query was stopped rather than return part of the answer"), true));
                        }
                    }
                    number += 1;
                }
            }
            Pagination::NextLink { .. } | Pagination::LinkHeader => {
                let mut url = self.url(set, &[])?;
                let mut number = 1;
                let mut seen = std::collections::HashSet::from([url.to_string()]);
                loop {
                    let info = self.page(&url, number, set, tx, remaining).await?;
                    let Some(next) = info.next_url.clone().filter(|n| !n.is_empty()) else {
                        return self.ended(&info, number, remaining);
                    };
                    if *remaining == Some(0) {
                        break;
                    }
                    if !looks_like_url(&next) {
                        return Err(self.error(format!(
                            "{endpoint}: page {number}'s next page ('{}') is not a URL; if it is a token to pass back, set [source.tables.{}] pagination = {{ style = \"cursor\", param = \"...\", field = \"...\" }}",
                            abbreviate(&next),
                            self.table.name
                        ), false));
                    }
                    let joined = url.join(&next).map_err(|e| {
                        self.error(
                            format!("{endpoint}: page {number} links to a bad next URL: {e}"),
                            false,
                        )
                    })?;
                    // The source's credentials go only where the table lives.
                    if joined.origin() != self.base.origin() {
                        return Err(self.error(
                            format!(
                                "{endpoint}: page {number}'s next page is on another host ({}); it is not followed with this source's credentials",
                                joined.origin().ascii_serialization()
                            ),
                            false,
                        ));
                    }
                    if !seen.insert(joined.to_string()) {
                        return Err(self.error(format!("{endpoint}: page {number} links back to a page already read; the query was stopped rather than loop"), true));
                    }
                    url = joined;
                    number += 1;
                }
            }
        }
        Ok(())
    }

    /// The first page's record count and the total it reports, for an
    /// offset-paged series: what [`OpenApiExec::striped`] splits its pages
    /// by. The page's rows are not sent. `None` where there is nothing to
    /// split: another pagination style, no total, an empty first page, or a
    /// first page that holds every record.
    ///
    /// [`OpenApiExec::striped`]: crate::openapi::exec::OpenApiExec::striped
    pub(in crate::openapi) async fn probe(&self, set: &RequestSet) -> DFResult<Option<(u64, u64)>> {
        let Pagination::Offset { offset, limit, max } = &self.table.pagination else {
            return Ok(None);
        };
        let size = self.page_size(None, *max);
        let first = self.offset_url(set, (offset, 0), (limit, size))?;
        // Nothing is wanted from the page but what it says of the others.
        let (tx, _rx) = mpsc::channel(1);
        let info = self.page(&first, 1, set, &tx, &mut Some(0)).await?;
        let step = info.records as u64;
        Ok(match info.total {
            Some(total) if step > 0 && total > step => Some((step, total)),
            _ => None,
        })
    }

    /// Reads one stripe of an offset-paged series' pages (see
    /// [`PageStripe`]). Every page but the last must hold `step` records
    /// and the last at least the rest of `total`: a page that holds fewer
    /// leaves records no stripe asks for, and one that holds more than
    /// asked overlaps the next stripe's, so either stops the query rather
    /// than answer short or twice.
    pub(in crate::openapi) async fn walk_stripe(
        &self,
        set: &RequestSet,
        tx: &mpsc::Sender<DFResult<RecordBatch>>,
        stripe: PageStripe,
    ) -> DFResult<()> {
        let Pagination::Offset { offset, limit, .. } = &self.table.pagination else {
            return Err(self.error(
                format!(
                    "{}: a stripe of pages needs offset pagination",
                    self.table.endpoint()
                ),
                false,
            ));
        };
        let PageStripe {
            index,
            count,
            step,
            total,
        } = stripe;
        let mut remaining = None;
        for page in (index..).step_by(count.max(1)) {
            let Some(at) = (page as u64).checked_mul(step).filter(|at| *at < total) else {
                break;
            };
            let url = self.offset_url(set, (offset, at), (limit, step))?;
            let held = self
                .page(&url, page + 1, set, tx, &mut remaining)
                .await?
                .records as u64;
            let due = step.min(total - at);
            let last = at + step >= total;
            if held < due || held > step || (!last && held != step) {
                return Err(self.error(
                    format!(
                        "{}: the first page said there are {total} records, {step} a page, but \
                         the page at offset {at} held {held} where {due} were due, so the pages \
                         read side by side would miss records or read some twice; the query was \
                         stopped rather than return a wrong answer",
                        self.table.endpoint()
                    ),
                    true,
                ));
            }
        }
        Ok(())
    }

    /// Fails when a page holds exactly the records of an earlier one: the
    /// server ignores the page parameter, and the walk would never end.
    fn not_repeated(
        &self,
        seen: &mut std::collections::HashSet<u64>,
        info: &PageInfo,
        number: usize,
    ) -> DFResult<()> {
        match info.fingerprint {
            Some(f) if !seen.insert(f) => Err(self.error(
                format!(
                    "{}: page {number} repeats an earlier page (the server ignores the page parameter?); the query was stopped rather than loop",
                    self.table.endpoint()
                ),
                true,
            )),
            _ => Ok(()),
        }
    }

    /// A walk that ran out of pages: fine unless the last page says more
    /// records follow that the table's pagination cannot reach.
    fn ended(&self, last: &PageInfo, number: usize, remaining: &Option<usize>) -> DFResult<()> {
        if *remaining == Some(0) {
            return Ok(());
        }
        match &last.more {
            Some(sign) => Err(self.error(
                format!(
                    "{}: page {number} shows there is more ({sign}) but table {} cannot ask for it; the query was stopped rather than return part of the answer. Set [source.tables.{}] pagination (style = \"offset\", \"page\", \"cursor\", \"next_link\" or \"link_header\") to read every page",
                    self.table.endpoint(),
                    self.table.name,
                    self.table.name
                ),
                false,
            )),
            None => Ok(()),
        }
    }
}

/// Whether a next-page value can be a URL (absolute, or relative to the page).
fn looks_like_url(value: &str) -> bool {
    value.contains("://") || value.starts_with('/') || value.starts_with('?')
}
