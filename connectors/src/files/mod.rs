//! `kind = "files"`: CSV, NDJSON and Parquet files in a local folder or an object
//! store become tables. Each file directly in the location is a table named after
//! it; each sub-folder is a table of all its files (hive-style `key=value/` folders
//! become partition columns). Schemas are inferred unless declared.

mod config;
mod local;
mod provider;
mod scoped;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bluelamp_engine::{ConfigError, ConnectedSource, SourceConfig, SourceError, SourceFactory};
use datafusion::datasource::TableProvider;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use url::Url;

pub use config::{FileFormatKind, FileTableConfig, FilesConfig};
pub use provider::{FilesSchemaProvider, FilesTableProvider, parse_type};
pub use scoped::SCHEME as STORE_SCHEME;

/// A store that refuses every path as not found: for a process that decodes
/// plans over files tables but never reads them (a cluster's scheduler),
/// under the URLs of [`STORE_SCHEME`].
pub fn unreadable_store() -> Arc<dyn ObjectStore> {
    Arc::new(scoped::ScopedStore::new(
        Arc::new(object_store::memory::InMemory::new()),
        StorePath::from("this process reads no files"),
    ))
}

use provider::{build_table, listing_options, parse_schema, table_name_for};

/// The factory for `kind = "files"`.
#[derive(Debug, Default)]
pub struct FilesSourceFactory;

#[async_trait]
impl SourceFactory for FilesSourceFactory {
    fn kind(&self) -> &'static str {
        "files"
    }

    fn validate(&self, source: &SourceConfig) -> Result<(), ConfigError> {
        let config: FilesConfig = source.options()?;
        if !config.delimiter.is_ascii() {
            return Err(source.error("delimiter", "the delimiter must be one ASCII character"));
        }
        for (name, table) in &config.tables {
            if let Some(schema) = &table.schema {
                parse_schema(schema)
                    .map_err(|e| source.error(&format!("tables.{name}.schema"), e))?;
            }
            if table.delimiter.is_some_and(|d| !d.is_ascii()) {
                return Err(source.error(
                    &format!("tables.{name}.delimiter"),
                    "the delimiter must be one ASCII character",
                ));
            }
        }
        location_url(source, &config.location).map(|_| ())
    }

    async fn connect(&self, source: &SourceConfig) -> Result<ConnectedSource, SourceError> {
        let config: FilesConfig = source
            .options()
            .map_err(|e| SourceError::new(source, e.to_string()))?;
        let root = location_url(source, &config.location)
            .map_err(|e| SourceError::new(source, e.to_string()))?;
        let store = open_store(&root, &config).map_err(|e| SourceError::unavailable(source, e))?;

        let ctx = SessionContext::new();
        let state = ctx.state();

        let discovered = discover(store.as_ref(), &root).await.map_err(|e| {
            SourceError::unavailable(source, format!("cannot list {}: {e}", redact_url(&root)))
        })?;

        let mut plans: BTreeMap<String, TablePlan> = discovered;
        for (name, overrides) in &config.tables {
            if overrides.exclude {
                plans.remove(name);
                continue;
            }
            let entry = plans.entry(name.clone()).or_insert_with(|| TablePlan {
                url: String::new(),
                format: None,
                extension: "",
            });
            if let Some(path) = &overrides.path {
                let joined = root.join(path).map_err(|e| {
                    SourceError::new(source, format!("table '{name}': bad path '{path}': {e}"))
                })?;
                entry.url = joined.to_string();
                if let Some((format, ext)) = FileFormatKind::from_file_name(path) {
                    entry.format = Some(format);
                    entry.extension = ext;
                }
            }
            if entry.url.is_empty() {
                return Err(SourceError::new(
                    source,
                    format!(
                        "table '{name}' is configured but no file or folder of that name was found; set `path`"
                    ),
                ));
            }
            if let Some(format) = overrides.format {
                entry.format = Some(format);
            }
        }

        let mut tables: BTreeMap<String, Arc<dyn TableProvider>> = BTreeMap::new();
        let mut warnings = Vec::new();
        for (name, plan) in plans {
            let overrides = config.tables.get(&name).cloned().unwrap_or_default();
            let Some(format) = plan.format else {
                warnings.push(format!(
                    "'{name}': no csv, ndjson or parquet files found; set tables.{name}.format to read it"
                ));
                continue;
            };
            let extension = if plan.extension.is_empty() {
                default_extension(format)
            } else {
                plan.extension
            };
            let delimiter = if extension == ".tsv" {
                b'\t'
            } else {
                overrides.delimiter.unwrap_or(config.delimiter) as u8
            };
            let options = listing_options(
                format,
                extension,
                overrides.has_header.unwrap_or(config.has_header),
                delimiter,
            );
            let schema = overrides
                .schema
                .as_ref()
                .map(parse_schema)
                .transpose()
                .map_err(|e| SourceError::new(source, format!("table '{name}': {e}")))?;
            // The table reads through a store of its own, limited to its
            // location and registered under a URL no other table uses.
            let table_url = Url::parse(&plan.url)
                .map_err(|e| SourceError::new(source, format!("table '{name}': {e}")))?;
            let scope = store_path(&table_url);
            let own_url = scoped::table_store_url(&source.name, &plan.url)
                .map_err(|e| SourceError::new(source, format!("table '{name}': {e}")))?;
            let own_store: Arc<dyn ObjectStore> =
                Arc::new(scoped::ScopedStore::new(Arc::clone(&store), scope));
            ctx.runtime_env()
                .register_object_store(own_url.as_ref(), Arc::clone(&own_store));
            let url = ListingTableUrl::parse(format!(
                "{}{}",
                own_url.as_str().trim_end_matches('/'),
                table_url.path()
            ))
            .map_err(|e| SourceError::new(source, format!("table '{name}': {e}")))?;
            let table = build_table(&state, url, options, schema)
                .await
                .map_err(|e| {
                    SourceError::new(
                        source,
                        format!("table '{name}': {}", first_line(&e.to_string())),
                    )
                })?;
            let provider = FilesTableProvider::new(table, own_url, own_store, source, &name);
            tables.insert(name, Arc::new(provider));
        }
        Ok(ConnectedSource {
            schema: Arc::new(FilesSchemaProvider::new(tables)),
            warnings,
            insert_only: 0,
        })
    }
}

#[derive(Debug)]
struct TablePlan {
    url: String,
    format: Option<FileFormatKind>,
    extension: &'static str,
}

fn default_extension(format: FileFormatKind) -> &'static str {
    match format {
        FileFormatKind::Csv => ".csv",
        FileFormatKind::Ndjson => ".ndjson",
        FileFormatKind::Parquet => ".parquet",
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// The location as a URL ending in `/` (so joins stay inside it). Plain paths are
/// resolved against the config file's folder.
fn location_url(source: &SourceConfig, location: &str) -> Result<Url, ConfigError> {
    let url = if location.contains("://") {
        Url::parse(location)
            .map_err(|e| source.error("location", format!("not a valid URL: {e}")))?
    } else {
        let path = source.resolve_path(location);
        let absolute = std::path::absolute(&path).map_err(|e| {
            source.error(
                "location",
                format!("cannot resolve {}: {e}", path.display()),
            )
        })?;
        Url::from_directory_path(&absolute).map_err(|()| {
            source.error(
                "location",
                format!("{} is not a usable folder path", absolute.display()),
            )
        })?
    };
    if url.path().ends_with('/') {
        Ok(url)
    } else {
        let mut with_slash = url.clone();
        with_slash.set_path(&format!("{}/", url.path()));
        Ok(with_slash)
    }
}

fn open_store(root: &Url, config: &FilesConfig) -> Result<Arc<dyn ObjectStore>, String> {
    if root.scheme() == "file" {
        let path = root
            .to_file_path()
            .map_err(|()| format!("{root} is not a local path"))?;
        if !path.is_dir() {
            return Err(format!("folder {} does not exist", path.display()));
        }
        return Ok(Arc::new(local::LocalFiles::new()));
    }
    let (store, _) = object_store::parse_url_opts(root, config.storage.iter())
        .map_err(|e| format!("cannot open {}: {e}", redact_url(root)))?;
    Ok(Arc::from(store))
}

/// A URL without user info, for messages.
fn redact_url(url: &Url) -> String {
    let mut clean = url.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.to_string()
}

/// Lists the location one level deep: files with a known extension and folders.
async fn discover(
    store: &dyn ObjectStore,
    root: &Url,
) -> Result<BTreeMap<String, TablePlan>, object_store::Error> {
    let prefix = store_path(root);
    let listing = store.list_with_delimiter(Some(&prefix)).await?;
    let mut plans = BTreeMap::new();
    for object in listing.objects {
        let Some(file_name) = object.location.filename() else {
            continue;
        };
        let Some((format, extension)) = FileFormatKind::from_file_name(file_name) else {
            continue;
        };
        let name = table_name_for(file_name, Some(extension));
        plans.insert(
            name,
            TablePlan {
                url: join_url(root, file_name),
                format: Some(format),
                extension,
            },
        );
    }
    for folder in listing.common_prefixes {
        let Some(folder_name) = folder.filename() else {
            continue;
        };
        let (format, extension) = match first_data_file(store, &folder).await? {
            Some((format, extension)) => (Some(format), extension),
            None => (None, ""),
        };
        plans.insert(
            table_name_for(folder_name, None),
            TablePlan {
                url: format!("{}/", join_url(root, folder_name)),
                format,
                extension,
            },
        );
    }
    Ok(plans)
}

async fn first_data_file(
    store: &dyn ObjectStore,
    folder: &StorePath,
) -> Result<Option<(FileFormatKind, &'static str)>, object_store::Error> {
    let mut files = store.list(Some(folder));
    while let Some(meta) = files.try_next().await? {
        if let Some(found) = meta
            .location
            .filename()
            .and_then(FileFormatKind::from_file_name)
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The store path of a table's location, as requests name it: not
/// canonicalised, so a table whose file is a symbolic link (a folder of links
/// to data kept elsewhere) is scoped to the link's path, which is what its
/// reads ask for.
fn store_path(root: &Url) -> StorePath {
    if root.scheme() == "file" {
        root.to_file_path()
            .ok()
            .and_then(|p| StorePath::from_absolute_path(p).ok())
            .unwrap_or_default()
    } else {
        StorePath::from_url_path(root.path()).unwrap_or_default()
    }
}

fn join_url(root: &Url, entry: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(entry.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("{root}{encoded}")
}
