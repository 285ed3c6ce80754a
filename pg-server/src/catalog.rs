//! `pg_catalog` for one session: the system tables `psql`'s `\d` commands,
//! DBeaver's navigator and BI tools' drivers read to list schemas, tables
//! and columns.
//!
//! Each table is computed when it is scanned, from the catalog of the
//! session scanning it, so it shows exactly what that user may read: a
//! table policy hides is absent from `pg_class`, a hidden column from
//! `pg_attribute`. OIDs are derived from names (stable for a server's
//! life and across sessions), so a client can look a table up by name and
//! then read its columns by OID. Tables Bluelamp has no counterpart for
//! (indexes, constraints, triggers, ...) exist with their columns and no
//! rows, so the queries that join them still run.
//!
//! Every table is owned by the role `bluelamp` (OID 10), and every source
//! schema counts as visible (`pg_table_is_visible`), so `\dt` lists the
//! sources' tables without a search path.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Int16Array, Int32Array, Int64Array, RecordBatch,
    StringArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session as CatalogSession, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::types::{PG_TYPE_KEY, pg_field_type};

/// The schema's name.
pub const PG_CATALOG: &str = "pg_catalog";
/// `pg_catalog`'s namespace OID, as in PostgreSQL.
pub const PG_CATALOG_OID: u32 = 11;
/// `public`'s namespace OID, as in PostgreSQL.
pub const PUBLIC_OID: u32 = 2200;
/// `information_schema`'s namespace OID.
pub const INFORMATION_SCHEMA_OID: u32 = 13_000;
/// The one role, `bluelamp`, owner of everything.
pub const OWNER_OID: u32 = 10;
/// The owner's name.
pub const OWNER: &str = "bluelamp";

/// A column's type in a catalog table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Col {
    Oid,
    Name,
    Text,
    Char,
    Bool,
    I16,
    I32,
    I64,
    F32,
    TextArray,
}

use Col::{Bool, Char, F32, I16, I32, I64, Name, Oid, Text, TextArray};

/// The tables, with their columns in PostgreSQL's order (those clients
/// read; PostgreSQL 16's full set where it is short).
const TABLES: &[(&str, &[(&str, Col)])] = &[
    (
        "pg_namespace",
        &[
            ("oid", Oid),
            ("nspname", Name),
            ("nspowner", Oid),
            ("nspacl", TextArray),
        ],
    ),
    (
        "pg_class",
        &[
            ("oid", Oid),
            ("relname", Name),
            ("relnamespace", Oid),
            ("reltype", Oid),
            ("reloftype", Oid),
            ("relowner", Oid),
            ("relam", Oid),
            ("relfilenode", Oid),
            ("reltablespace", Oid),
            ("relpages", I32),
            ("reltuples", F32),
            ("relallvisible", I32),
            ("reltoastrelid", Oid),
            ("relhasindex", Bool),
            ("relisshared", Bool),
            ("relpersistence", Char),
            ("relkind", Char),
            ("relnatts", I16),
            ("relchecks", I16),
            ("relhasrules", Bool),
            ("relhastriggers", Bool),
            ("relhassubclass", Bool),
            ("relrowsecurity", Bool),
            ("relforcerowsecurity", Bool),
            ("relispopulated", Bool),
            ("relreplident", Char),
            ("relispartition", Bool),
            ("relrewrite", Oid),
            ("relfrozenxid", I64),
            ("relminmxid", I64),
            ("relacl", TextArray),
            ("reloptions", TextArray),
            ("relpartbound", Text),
        ],
    ),
    (
        "pg_attribute",
        &[
            ("attrelid", Oid),
            ("attname", Name),
            ("atttypid", Oid),
            ("attstattarget", I32),
            ("attlen", I16),
            ("attnum", I16),
            ("attndims", I32),
            ("attcacheoff", I32),
            ("atttypmod", I32),
            ("attbyval", Bool),
            ("attalign", Char),
            ("attstorage", Char),
            ("attcompression", Char),
            ("attnotnull", Bool),
            ("atthasdef", Bool),
            ("atthasmissing", Bool),
            ("attidentity", Char),
            ("attgenerated", Char),
            ("attisdropped", Bool),
            ("attislocal", Bool),
            ("attinhcount", I32),
            ("attcollation", Oid),
            ("attacl", TextArray),
            ("attoptions", TextArray),
            ("attfdwoptions", TextArray),
            ("attmissingval", Text),
        ],
    ),
    (
        "pg_type",
        &[
            ("oid", Oid),
            ("typname", Name),
            ("typnamespace", Oid),
            ("typowner", Oid),
            ("typlen", I16),
            ("typbyval", Bool),
            ("typtype", Char),
            ("typcategory", Char),
            ("typispreferred", Bool),
            ("typisdefined", Bool),
            ("typdelim", Char),
            ("typrelid", Oid),
            ("typsubscript", Text),
            ("typelem", Oid),
            ("typarray", Oid),
            ("typinput", Oid),
            ("typoutput", Oid),
            ("typreceive", Oid),
            ("typsend", Oid),
            ("typmodin", Text),
            ("typmodout", Text),
            ("typanalyze", Text),
            ("typalign", Char),
            ("typstorage", Char),
            ("typnotnull", Bool),
            ("typbasetype", Oid),
            ("typtypmod", I32),
            ("typndims", I32),
            ("typcollation", Oid),
            ("typdefaultbin", Text),
            ("typdefault", Text),
            ("typacl", TextArray),
        ],
    ),
    (
        "pg_database",
        &[
            ("oid", Oid),
            ("datname", Name),
            ("datdba", Oid),
            ("encoding", I32),
            ("datlocprovider", Char),
            ("datistemplate", Bool),
            ("datallowconn", Bool),
            ("datconnlimit", I32),
            ("datfrozenxid", I64),
            ("datminmxid", I64),
            ("dattablespace", Oid),
            ("datcollate", Text),
            ("datctype", Text),
            ("daticulocale", Text),
            ("daticurules", Text),
            ("datcollversion", Text),
            ("datacl", TextArray),
        ],
    ),
    (
        "pg_am",
        &[
            ("oid", Oid),
            ("amname", Name),
            ("amhandler", Text),
            ("amtype", Char),
        ],
    ),
    (
        "pg_roles",
        &[
            ("rolname", Name),
            ("rolsuper", Bool),
            ("rolinherit", Bool),
            ("rolcreaterole", Bool),
            ("rolcreatedb", Bool),
            ("rolcanlogin", Bool),
            ("rolreplication", Bool),
            ("rolconnlimit", I32),
            ("rolpassword", Text),
            ("rolvaliduntil", Text),
            ("rolbypassrls", Bool),
            ("rolconfig", TextArray),
            ("oid", Oid),
        ],
    ),
    (
        "pg_user",
        &[
            ("usename", Name),
            ("usesysid", Oid),
            ("usecreatedb", Bool),
            ("usesuper", Bool),
            ("userepl", Bool),
            ("usebypassrls", Bool),
            ("passwd", Text),
            ("valuntil", Text),
            ("useconfig", TextArray),
        ],
    ),
    (
        "pg_tables",
        &[
            ("schemaname", Name),
            ("tablename", Name),
            ("tableowner", Name),
            ("tablespace", Name),
            ("hasindexes", Bool),
            ("hasrules", Bool),
            ("hastriggers", Bool),
            ("rowsecurity", Bool),
        ],
    ),
    (
        "pg_views",
        &[
            ("schemaname", Name),
            ("viewname", Name),
            ("viewowner", Name),
            ("definition", Text),
        ],
    ),
    (
        "pg_matviews",
        &[
            ("schemaname", Name),
            ("matviewname", Name),
            ("matviewowner", Name),
            ("tablespace", Name),
            ("hasindexes", Bool),
            ("ispopulated", Bool),
            ("definition", Text),
        ],
    ),
    (
        "pg_stat_user_tables",
        &[
            ("relid", Oid),
            ("schemaname", Name),
            ("relname", Name),
            ("seq_scan", I64),
            ("n_live_tup", I64),
            ("n_dead_tup", I64),
        ],
    ),
    (
        "pg_cursors",
        &[
            ("name", Text),
            ("statement", Text),
            ("is_holdable", Bool),
            ("is_binary", Bool),
            ("is_scrollable", Bool),
        ],
    ),
    (
        "pg_tablespace",
        &[
            ("oid", Oid),
            ("spcname", Name),
            ("spcowner", Oid),
            ("spcacl", TextArray),
            ("spcoptions", TextArray),
        ],
    ),
    (
        "pg_description",
        &[
            ("objoid", Oid),
            ("classoid", Oid),
            ("objsubid", I32),
            ("description", Text),
        ],
    ),
    (
        "pg_auth_members",
        &[
            ("oid", Oid),
            ("roleid", Oid),
            ("member", Oid),
            ("grantor", Oid),
            ("admin_option", Bool),
        ],
    ),
    (
        "pg_shdescription",
        &[("objoid", Oid), ("classoid", Oid), ("description", Text)],
    ),
    (
        "pg_attrdef",
        &[
            ("oid", Oid),
            ("adrelid", Oid),
            ("adnum", I16),
            ("adbin", Text),
        ],
    ),
    (
        "pg_constraint",
        &[
            ("oid", Oid),
            ("conname", Name),
            ("connamespace", Oid),
            ("contype", Char),
            ("condeferrable", Bool),
            ("condeferred", Bool),
            ("convalidated", Bool),
            ("conrelid", Oid),
            ("contypid", Oid),
            ("conindid", Oid),
            ("conparentid", Oid),
            ("confrelid", Oid),
            ("confupdtype", Char),
            ("confdeltype", Char),
            ("confmatchtype", Char),
            ("conislocal", Bool),
            ("coninhcount", I32),
            ("connoinherit", Bool),
            ("conkey", TextArray),
            ("confkey", TextArray),
            ("conbin", Text),
        ],
    ),
    (
        "pg_index",
        &[
            ("indexrelid", Oid),
            ("indrelid", Oid),
            ("indnatts", I16),
            ("indnkeyatts", I16),
            ("indisunique", Bool),
            ("indnullsnotdistinct", Bool),
            ("indisprimary", Bool),
            ("indisexclusion", Bool),
            ("indimmediate", Bool),
            ("indisclustered", Bool),
            ("indisvalid", Bool),
            ("indcheckxmin", Bool),
            ("indisready", Bool),
            ("indislive", Bool),
            ("indisreplident", Bool),
            ("indkey", TextArray),
            ("indcollation", TextArray),
            ("indclass", TextArray),
            ("indoption", TextArray),
            ("indexprs", Text),
            ("indpred", Text),
        ],
    ),
    (
        "pg_inherits",
        &[
            ("inhrelid", Oid),
            ("inhparent", Oid),
            ("inhseqno", I32),
            ("inhdetachpending", Bool),
        ],
    ),
    (
        "pg_collation",
        &[
            ("oid", Oid),
            ("collname", Name),
            ("collnamespace", Oid),
            ("collowner", Oid),
            ("collprovider", Char),
            ("collisdeterministic", Bool),
            ("collencoding", I32),
            ("collcollate", Text),
            ("collctype", Text),
        ],
    ),
    (
        "pg_policy",
        &[
            ("oid", Oid),
            ("polname", Name),
            ("polrelid", Oid),
            ("polcmd", Char),
            ("polpermissive", Bool),
            ("polroles", TextArray),
            ("polqual", Text),
            ("polwithcheck", Text),
        ],
    ),
    (
        "pg_trigger",
        &[
            ("oid", Oid),
            ("tgrelid", Oid),
            ("tgparentid", Oid),
            ("tgname", Name),
            ("tgfoid", Oid),
            ("tgtype", I16),
            ("tgenabled", Char),
            ("tgisinternal", Bool),
        ],
    ),
    (
        "pg_rewrite",
        &[
            ("oid", Oid),
            ("rulename", Name),
            ("ev_class", Oid),
            ("ev_type", Char),
            ("ev_enabled", Char),
            ("is_instead", Bool),
        ],
    ),
    (
        "pg_proc",
        &[
            ("oid", Oid),
            ("proname", Name),
            ("pronamespace", Oid),
            ("proowner", Oid),
            ("prolang", Oid),
            ("prokind", Char),
            ("prosecdef", Bool),
            ("proretset", Bool),
            ("provolatile", Char),
            ("pronargs", I16),
            ("prorettype", Oid),
            ("proargtypes", Text),
            ("proallargtypes", TextArray),
            ("proargmodes", TextArray),
            ("proargnames", TextArray),
            ("prosrc", Text),
        ],
    ),
    (
        "pg_enum",
        &[
            ("oid", Oid),
            ("enumtypid", Oid),
            ("enumsortorder", F32),
            ("enumlabel", Name),
        ],
    ),
    (
        "pg_range",
        &[
            ("rngtypid", Oid),
            ("rngsubtype", Oid),
            ("rngmultitypid", Oid),
        ],
    ),
    (
        "pg_extension",
        &[
            ("oid", Oid),
            ("extname", Name),
            ("extowner", Oid),
            ("extnamespace", Oid),
            ("extrelocatable", Bool),
            ("extversion", Text),
        ],
    ),
    (
        "pg_statistic_ext",
        &[
            ("oid", Oid),
            ("stxrelid", Oid),
            ("stxname", Name),
            ("stxnamespace", Oid),
            ("stxowner", Oid),
            ("stxstattarget", I32),
            ("stxkeys", TextArray),
            ("stxkind", TextArray),
        ],
    ),
    (
        "pg_publication",
        &[
            ("oid", Oid),
            ("pubname", Name),
            ("pubowner", Oid),
            ("puballtables", Bool),
            ("pubinsert", Bool),
            ("pubupdate", Bool),
            ("pubdelete", Bool),
            ("pubtruncate", Bool),
            ("pubviaroot", Bool),
        ],
    ),
    (
        "pg_publication_rel",
        &[
            ("oid", Oid),
            ("prpubid", Oid),
            ("prrelid", Oid),
            ("prqual", Text),
            ("prattrs", TextArray),
        ],
    ),
    (
        "pg_publication_namespace",
        &[("oid", Oid), ("pnpubid", Oid), ("pnnspid", Oid)],
    ),
    (
        "pg_foreign_table",
        &[
            ("ftrelid", Oid),
            ("ftserver", Oid),
            ("ftoptions", TextArray),
        ],
    ),
    (
        "pg_partitioned_table",
        &[
            ("partrelid", Oid),
            ("partstrat", Char),
            ("partnatts", I16),
            ("partdefid", Oid),
        ],
    ),
    (
        "pg_sequence",
        &[
            ("seqrelid", Oid),
            ("seqtypid", Oid),
            ("seqstart", I64),
            ("seqincrement", I64),
        ],
    ),
    (
        "pg_depend",
        &[
            ("classid", Oid),
            ("objid", Oid),
            ("objsubid", I32),
            ("refclassid", Oid),
            ("refobjid", Oid),
            ("refobjsubid", I32),
            ("deptype", Char),
        ],
    ),
    (
        "pg_settings",
        &[
            ("name", Text),
            ("setting", Text),
            ("unit", Text),
            ("category", Text),
            ("short_desc", Text),
            ("context", Text),
            ("vartype", Text),
            ("source", Text),
        ],
    ),
];

/// `information_schema`'s tables, with the columns clients read.
const INFORMATION_TABLES: &[(&str, &[(&str, Col)])] = &[
    (
        "schemata",
        &[
            ("catalog_name", Name),
            ("schema_name", Name),
            ("schema_owner", Name),
            ("default_character_set_catalog", Name),
            ("default_character_set_schema", Name),
            ("default_character_set_name", Name),
            ("sql_path", Text),
        ],
    ),
    (
        "tables",
        &[
            ("table_catalog", Name),
            ("table_schema", Name),
            ("table_name", Name),
            ("table_type", Text),
            ("self_referencing_column_name", Name),
            ("reference_generation", Text),
            ("user_defined_type_catalog", Name),
            ("user_defined_type_schema", Name),
            ("user_defined_type_name", Name),
            ("is_insertable_into", Text),
            ("is_typed", Text),
            ("commit_action", Text),
        ],
    ),
    (
        "views",
        &[
            ("table_catalog", Name),
            ("table_schema", Name),
            ("table_name", Name),
            ("view_definition", Text),
            ("check_option", Text),
            ("is_updatable", Text),
            ("is_insertable_into", Text),
            ("is_trigger_updatable", Text),
            ("is_trigger_deletable", Text),
            ("is_trigger_insertable_into", Text),
        ],
    ),
    (
        "columns",
        &[
            ("table_catalog", Name),
            ("table_schema", Name),
            ("table_name", Name),
            ("column_name", Name),
            ("ordinal_position", I32),
            ("column_default", Text),
            ("is_nullable", Text),
            ("data_type", Text),
            ("character_maximum_length", I32),
            ("character_octet_length", I32),
            ("numeric_precision", I32),
            ("numeric_precision_radix", I32),
            ("numeric_scale", I32),
            ("datetime_precision", I32),
            ("interval_type", Text),
            ("interval_precision", I32),
            ("character_set_catalog", Name),
            ("character_set_schema", Name),
            ("character_set_name", Name),
            ("collation_catalog", Name),
            ("collation_schema", Name),
            ("collation_name", Name),
            ("domain_catalog", Name),
            ("domain_schema", Name),
            ("domain_name", Name),
            ("udt_catalog", Name),
            ("udt_schema", Name),
            ("udt_name", Name),
            ("scope_catalog", Name),
            ("scope_schema", Name),
            ("scope_name", Name),
            ("maximum_cardinality", I32),
            ("dtd_identifier", Name),
            ("is_self_referencing", Text),
            ("is_identity", Text),
            ("identity_generation", Text),
            ("identity_start", Text),
            ("identity_increment", Text),
            ("identity_maximum", Text),
            ("identity_minimum", Text),
            ("identity_cycle", Text),
            ("is_generated", Text),
            ("generation_expression", Text),
            ("is_updatable", Text),
        ],
    ),
    (
        "table_constraints",
        &[
            ("constraint_catalog", Name),
            ("constraint_schema", Name),
            ("constraint_name", Name),
            ("table_catalog", Name),
            ("table_schema", Name),
            ("table_name", Name),
            ("constraint_type", Text),
            ("is_deferrable", Text),
            ("initially_deferred", Text),
            ("enforced", Text),
            ("nulls_distinct", Text),
        ],
    ),
    (
        "key_column_usage",
        &[
            ("constraint_catalog", Name),
            ("constraint_schema", Name),
            ("constraint_name", Name),
            ("table_catalog", Name),
            ("table_schema", Name),
            ("table_name", Name),
            ("column_name", Name),
            ("ordinal_position", I32),
            ("position_in_unique_constraint", I32),
        ],
    ),
    (
        "referential_constraints",
        &[
            ("constraint_catalog", Name),
            ("constraint_schema", Name),
            ("constraint_name", Name),
            ("unique_constraint_catalog", Name),
            ("unique_constraint_schema", Name),
            ("unique_constraint_name", Name),
            ("match_option", Text),
            ("update_rule", Text),
            ("delete_rule", Text),
        ],
    ),
    (
        "constraint_column_usage",
        &[
            ("table_catalog", Name),
            ("table_schema", Name),
            ("table_name", Name),
            ("column_name", Name),
            ("constraint_catalog", Name),
            ("constraint_schema", Name),
            ("constraint_name", Name),
        ],
    ),
    (
        "routines",
        &[
            ("specific_catalog", Name),
            ("specific_schema", Name),
            ("specific_name", Name),
            ("routine_catalog", Name),
            ("routine_schema", Name),
            ("routine_name", Name),
            ("routine_type", Text),
            ("data_type", Text),
        ],
    ),
];

/// The types Bluelamp sends or names: OID, name, length, category, array OID.
pub(crate) const TYPES: &[(u32, &str, i16, &str, u32)] = &[
    (16, "bool", 1, "B", 1000),
    (17, "bytea", -1, "U", 1001),
    (18, "char", 1, "Z", 1002),
    (19, "name", 64, "S", 1003),
    (20, "int8", 8, "N", 1016),
    (21, "int2", 2, "N", 1005),
    (23, "int4", 4, "N", 1007),
    (25, "text", -1, "S", 1009),
    (26, "oid", 4, "N", 1028),
    (114, "json", -1, "U", 199),
    (700, "float4", 4, "N", 1021),
    (701, "float8", 8, "N", 1022),
    (705, "unknown", -2, "X", 0),
    (1042, "bpchar", -1, "S", 1014),
    (1043, "varchar", -1, "S", 1015),
    (1082, "date", 4, "D", 1182),
    (1083, "time", 8, "D", 1183),
    (1114, "timestamp", 8, "D", 1115),
    (1184, "timestamptz", 8, "D", 1185),
    (1186, "interval", 16, "T", 1187),
    (1700, "numeric", -1, "N", 1231),
    (2950, "uuid", 16, "U", 2951),
    (3802, "jsonb", -1, "U", 3807),
];

/// A stable OID for a named object: FNV-1a of its name, above
/// PostgreSQL's range of built-in OIDs.
pub fn name_oid(name: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    16_384 + hash % 0x7fff_0000
}

/// A namespace's OID.
pub fn namespace_oid(schema: &str) -> u32 {
    match schema {
        PG_CATALOG => PG_CATALOG_OID,
        "public" => PUBLIC_OID,
        "information_schema" => INFORMATION_SCHEMA_OID,
        other => name_oid(&format!("namespace:{other}")),
    }
}

/// A relation's OID.
pub fn relation_oid(schema: &str, table: &str) -> u32 {
    name_oid(&format!("relation:{schema}.{table}"))
}

/// Which system schema a table belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Catalog,
    Information,
}

impl Which {
    fn tables(self) -> &'static [(&'static str, &'static [(&'static str, Col)])] {
        match self {
            Which::Catalog => TABLES,
            Which::Information => INFORMATION_TABLES,
        }
    }
}

/// A connection's open cursors, for `pg_cursors`: name, statement,
/// holdable, binary. The connection keeps it current.
pub type OpenCursors = Arc<std::sync::Mutex<Vec<(String, String, bool, bool)>>>;

/// The `pg_catalog` schema of one session.
#[derive(Debug, Default)]
pub struct PgCatalogSchema {
    cursors: OpenCursors,
}

impl PgCatalogSchema {
    /// The schema, showing `cursors` in `pg_cursors`.
    pub fn new(cursors: OpenCursors) -> Self {
        Self { cursors }
    }
}

/// PostgreSQL's `information_schema` for one session, registered as
/// [`INFORMATION_SCHEMA`] (DataFusion's own `information_schema` speaks
/// Arrow type names); [`crate::dialect`] sends `information_schema.*` here.
#[derive(Debug, Default)]
pub struct PgInformationSchema;

/// The name [`PgInformationSchema`] is registered under.
pub const INFORMATION_SCHEMA: &str = "pg_information_schema";

fn table_names(which: Which) -> Vec<String> {
    which
        .tables()
        .iter()
        .map(|(name, _)| (*name).to_string())
        .collect()
}

fn table(which: Which, name: &str, cursors: &OpenCursors) -> Option<Arc<dyn TableProvider>> {
    which
        .tables()
        .iter()
        .find(|(table, _)| *table == name)
        .map(|(table, columns)| {
            Arc::new(PgTable {
                which,
                name: table,
                schema: table_schema(columns),
                cursors: Arc::clone(cursors),
            }) as Arc<dyn TableProvider>
        })
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        table_names(Which::Catalog)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(table(Which::Catalog, name, &self.cursors))
    }

    fn table_exist(&self, name: &str) -> bool {
        table(Which::Catalog, name, &self.cursors).is_some()
    }
}

#[async_trait]
impl SchemaProvider for PgInformationSchema {
    fn table_names(&self) -> Vec<String> {
        table_names(Which::Information)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(table(Which::Information, name, &OpenCursors::default()))
    }

    fn table_exist(&self, name: &str) -> bool {
        table(Which::Information, name, &OpenCursors::default()).is_some()
    }
}

fn field(name: &str, col: Col) -> Field {
    let (data_type, pg) = match col {
        Oid => (DataType::UInt32, Some("oid")),
        Name => (DataType::Utf8, Some("name")),
        Char => (DataType::Utf8, Some("char")),
        Text => (DataType::Utf8, None),
        Bool => (DataType::Boolean, None),
        I16 => (DataType::Int16, None),
        I32 => (DataType::Int32, None),
        I64 => (DataType::Int64, None),
        F32 => (DataType::Float32, None),
        TextArray => (
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            None,
        ),
    };
    let field = Field::new(name, data_type, true);
    match pg {
        Some(pg) => field.with_metadata(HashMap::from([(PG_TYPE_KEY.to_string(), pg.to_string())])),
        None => field,
    }
}

fn table_schema(columns: &[(&str, Col)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, col)| field(name, *col))
            .collect::<Vec<_>>(),
    ))
}

/// A value in a catalog row.
#[derive(Clone)]
enum V {
    Null,
    O(u32),
    S(String),
    B(bool),
    I(i64),
    F(f32),
}

fn s(text: &str) -> V {
    V::S(text.to_string())
}

#[derive(Debug)]
struct PgTable {
    which: Which,
    name: &'static str,
    schema: SchemaRef,
    cursors: OpenCursors,
}

#[async_trait]
impl TableProvider for PgTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("pg_catalog needs a SessionState".into()))?;
        let rows = match self.which {
            Which::Catalog if self.name == "pg_cursors" => self
                .cursors
                .lock()
                .map(|open| {
                    open.iter()
                        .map(|(name, statement, hold, binary)| {
                            vec![
                                s(name),
                                s(statement),
                                V::B(*hold),
                                V::B(*binary),
                                V::B(false),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Which::Catalog => rows(self.name, state).await?,
            Which::Information => information_rows(self.name, state).await?,
        };
        let batch = to_batch(&self.schema, rows)?;
        MemTable::try_new(Arc::clone(&self.schema), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// One relation the session sees.
struct Relation {
    schema: String,
    name: String,
    view: bool,
    columns: Option<SchemaRef>,
}

/// Every relation in the session's catalog (but `pg_catalog`'s own, and
/// `information_schema`'s), with columns when `with_columns`.
async fn relations(state: &SessionState, with_columns: bool) -> Vec<Relation> {
    let mut out = Vec::new();
    let catalog_name = state.config().options().catalog.default_catalog.clone();
    let Some(catalog) = state.catalog_list().catalog(&catalog_name) else {
        return out;
    };
    let mut schemas = catalog.schema_names();
    schemas.sort();
    for schema_name in schemas {
        if [PG_CATALOG, INFORMATION_SCHEMA, "information_schema"].contains(&schema_name.as_str()) {
            continue;
        }
        let Some(schema) = catalog.schema(&schema_name) else {
            continue;
        };
        let mut tables = schema.table_names();
        tables.sort();
        for table in tables {
            // A source that is down lists its tables but cannot open them:
            // they are listed without columns rather than failing the query.
            let provider = schema.table(&table).await.ok().flatten();
            out.push(Relation {
                view: provider
                    .as_ref()
                    .is_some_and(|p| p.table_type() == TableType::View),
                columns: provider.filter(|_| with_columns).map(|p| p.schema()),
                schema: schema_name.clone(),
                name: table,
            });
        }
    }
    out
}

async fn schema_names(state: &SessionState) -> Vec<String> {
    let catalog_name = state.config().options().catalog.default_catalog.clone();
    let mut names: Vec<String> = state
        .catalog_list()
        .catalog(&catalog_name)
        .map(|c| c.schema_names())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n != INFORMATION_SCHEMA)
        .collect();
    if !names.iter().any(|n| n == "information_schema") {
        names.push("information_schema".into());
    }
    names.sort();
    names
}

/// A table's rows, as values in its columns' order.
async fn rows(table: &str, state: &SessionState) -> Result<Vec<Vec<V>>> {
    Ok(match table {
        "pg_namespace" => schema_names(state)
            .await
            .into_iter()
            .map(|name| {
                vec![
                    V::O(namespace_oid(&name)),
                    V::S(name),
                    V::O(OWNER_OID),
                    V::Null,
                ]
            })
            .collect(),
        "pg_class" => {
            let mut out = Vec::new();
            for relation in relations(state, false).await {
                out.push(class_row(
                    relation_oid(&relation.schema, &relation.name),
                    &relation.name,
                    namespace_oid(&relation.schema),
                    if relation.view { "v" } else { "r" },
                ));
            }
            for (name, _) in TABLES {
                out.push(class_row(
                    relation_oid(PG_CATALOG, name),
                    name,
                    PG_CATALOG_OID,
                    "v",
                ));
            }
            out
        }
        "pg_attribute" => {
            let mut out = Vec::new();
            for relation in relations(state, true).await {
                let oid = relation_oid(&relation.schema, &relation.name);
                if let Some(columns) = &relation.columns {
                    for (i, field) in columns.fields().iter().enumerate() {
                        out.push(attribute_row(oid, i, field));
                    }
                }
            }
            for (name, columns) in TABLES {
                let oid = relation_oid(PG_CATALOG, name);
                for (i, field) in table_schema(columns).fields().iter().enumerate() {
                    out.push(attribute_row(oid, i, field));
                }
            }
            out
        }
        "pg_type" => type_rows(),
        "pg_proc" => proc_rows(),
        "pg_database" => vec![vec![
            V::O(name_oid("database:bluelamp")),
            s(bluelamp_engine::session::CATALOG),
            V::O(OWNER_OID),
            V::I(6),
            s("c"),
            V::B(false),
            V::B(true),
            V::I(-1),
            V::I(0),
            V::I(1),
            V::O(1663),
            s("C"),
            s("C"),
            V::Null,
            V::Null,
            V::Null,
            V::Null,
        ]],
        "pg_am" => vec![
            vec![V::O(2), s("heap"), s("heap_tableam_handler"), s("t")],
            vec![V::O(403), s("btree"), s("bthandler"), s("i")],
        ],
        "pg_roles" => vec![vec![
            s(OWNER),
            V::B(false),
            V::B(true),
            V::B(false),
            V::B(false),
            V::B(true),
            V::B(false),
            V::I(-1),
            s("********"),
            V::Null,
            V::B(false),
            V::Null,
            V::O(OWNER_OID),
        ]],
        "pg_user" => vec![vec![
            s(OWNER),
            V::O(OWNER_OID),
            V::B(false),
            V::B(false),
            V::B(false),
            V::B(false),
            s("********"),
            V::Null,
            V::Null,
        ]],
        "pg_tables" => relations(state, false)
            .await
            .into_iter()
            .filter(|r| !r.view)
            .map(|r| {
                vec![
                    V::S(r.schema),
                    V::S(r.name),
                    s(OWNER),
                    V::Null,
                    V::B(false),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                ]
            })
            .collect(),
        "pg_stat_user_tables" => relations(state, false)
            .await
            .into_iter()
            .filter(|r| !r.view)
            .map(|r| {
                vec![
                    V::O(relation_oid(&r.schema, &r.name)),
                    V::S(r.schema),
                    V::S(r.name),
                    V::I(0),
                    V::Null,
                    V::Null,
                ]
            })
            .collect(),
        "pg_views" => relations(state, false)
            .await
            .into_iter()
            .filter(|r| r.view)
            .map(|r| vec![V::S(r.schema), V::S(r.name), s(OWNER), V::Null])
            .collect(),
        "pg_tablespace" => vec![vec![
            V::O(1663),
            s("pg_default"),
            V::O(OWNER_OID),
            V::Null,
            V::Null,
        ]],
        "pg_settings" => crate::statements::PARAMETERS
            .iter()
            .map(|(name, value, _)| {
                vec![
                    s(name),
                    s(value),
                    V::Null,
                    s("Bluelamp"),
                    V::Null,
                    s("user"),
                    s("string"),
                    s("default"),
                ]
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// An `information_schema` table's rows.
async fn information_rows(table: &str, state: &SessionState) -> Result<Vec<Vec<V>>> {
    let database = s(bluelamp_engine::session::CATALOG);
    Ok(match table {
        "schemata" => schema_names(state)
            .await
            .into_iter()
            .map(|name| {
                vec![
                    database.clone(),
                    V::S(name),
                    s(OWNER),
                    V::Null,
                    V::Null,
                    V::Null,
                    V::Null,
                ]
            })
            .collect(),
        "tables" => relations(state, false)
            .await
            .into_iter()
            .map(|r| {
                vec![
                    database.clone(),
                    V::S(r.schema),
                    V::S(r.name),
                    s(if r.view { "VIEW" } else { "BASE TABLE" }),
                    V::Null,
                    V::Null,
                    V::Null,
                    V::Null,
                    V::Null,
                    s(if r.view { "NO" } else { "YES" }),
                    s("NO"),
                    V::Null,
                ]
            })
            .collect(),
        "views" => relations(state, false)
            .await
            .into_iter()
            .filter(|r| r.view)
            .map(|r| {
                vec![
                    database.clone(),
                    V::S(r.schema),
                    V::S(r.name),
                    V::Null,
                    s("NONE"),
                    s("NO"),
                    s("NO"),
                    s("NO"),
                    s("NO"),
                    s("NO"),
                ]
            })
            .collect(),
        "columns" => {
            let mut out = Vec::new();
            for relation in relations(state, true).await {
                let Some(columns) = &relation.columns else {
                    continue;
                };
                for (i, field) in columns.fields().iter().enumerate() {
                    out.push(column_row(&relation, i, field));
                }
            }
            out
        }
        _ => Vec::new(),
    })
}

/// One `information_schema.columns` row.
fn column_row(relation: &Relation, index: usize, field: &Field) -> Vec<V> {
    let t = pg_field_type(field);
    let udt = TYPES
        .iter()
        .find(|(oid, ..)| *oid == t.oid)
        .map_or("text", |(_, name, ..)| *name);
    let data_type = crate::functions::format_type(i64::from(t.oid), -1);
    let (precision, radix, scale) = match field.data_type() {
        DataType::Int8 | DataType::Int16 => (V::I(16), V::I(2), V::I(0)),
        DataType::Int32 | DataType::UInt8 | DataType::UInt16 => (V::I(32), V::I(2), V::I(0)),
        DataType::Int64 | DataType::UInt32 => (V::I(64), V::I(2), V::I(0)),
        DataType::Float16 | DataType::Float32 => (V::I(24), V::I(2), V::Null),
        DataType::Float64 => (V::I(53), V::I(2), V::Null),
        DataType::Decimal32(p, sc)
        | DataType::Decimal64(p, sc)
        | DataType::Decimal128(p, sc)
        | DataType::Decimal256(p, sc) => (V::I(i64::from(*p)), V::I(10), V::I(i64::from(*sc))),
        _ => (V::Null, V::Null, V::Null),
    };
    let datetime = match t.oid {
        crate::types::oid::TIMESTAMP
        | crate::types::oid::TIMESTAMPTZ
        | crate::types::oid::TIME
        | crate::types::oid::INTERVAL => V::I(6),
        crate::types::oid::DATE => V::I(0),
        _ => V::Null,
    };
    let mut row = vec![
        s(bluelamp_engine::session::CATALOG),
        V::S(relation.schema.clone()),
        V::S(relation.name.clone()),
        V::S(field.name().clone()),
        V::I(index as i64 + 1),
        V::Null,
        s(if field.is_nullable() { "YES" } else { "NO" }),
        V::S(data_type),
        V::Null,
        V::Null,
        precision,
        radix,
        scale,
        datetime,
        V::Null,
        V::Null,
        V::Null,
        V::Null,
        V::Null,
        V::Null,
        V::Null,
        V::Null,
        V::Null,
        V::Null,
        V::Null,
        s(bluelamp_engine::session::CATALOG),
        s(PG_CATALOG),
        s(udt),
        V::Null,
        V::Null,
        V::Null,
        V::Null,
        V::S((index + 1).to_string()),
        s("NO"),
        s("NO"),
    ];
    row.extend([V::Null, V::Null, V::Null, V::Null, V::Null, V::Null]);
    row.extend([s("NEVER"), V::Null, s("YES")]);
    row
}

/// A built-in function's OID (the types' input, output, receive and send
/// functions, which `pg_type` names and drivers join to `pg_proc`).
pub fn proc_oid(name: &str) -> u32 {
    name_oid(&format!("proc:{name}"))
}

/// Every type: the base types, then an array type of each.
fn all_types() -> Vec<(u32, String, i16, &'static str, u32, u32)> {
    let mut out: Vec<(u32, String, i16, &'static str, u32, u32)> = TYPES
        .iter()
        .map(|(oid, name, len, category, array)| {
            (*oid, (*name).to_string(), *len, *category, 0, *array)
        })
        .collect();
    for (oid, name, _, _, array) in TYPES {
        if *array != 0 {
            out.push((*array, format!("_{name}"), -1, "A", *oid, 0));
        }
    }
    out
}

/// A type's four I/O functions, by name.
fn io_functions(name: &str, element: u32) -> [String; 4] {
    if element != 0 {
        ["array_in", "array_out", "array_recv", "array_send"].map(str::to_string)
    } else {
        ["in", "out", "recv", "send"].map(|f| format!("{name}{f}"))
    }
}

fn type_rows() -> Vec<Vec<V>> {
    all_types()
        .into_iter()
        .map(|(oid, name, len, category, element, array)| {
            let [input, output, receive, send] = io_functions(&name, element);
            vec![
                V::O(oid),
                V::S(name),
                V::O(PG_CATALOG_OID),
                V::O(OWNER_OID),
                V::I(i64::from(len)),
                V::B(matches!(len, 1 | 2 | 4 | 8)),
                s("b"),
                s(category),
                V::B(false),
                V::B(true),
                s(","),
                V::O(0),
                s(if element != 0 {
                    "array_subscript_handler"
                } else {
                    "-"
                }),
                V::O(element),
                V::O(array),
                V::O(proc_oid(&input)),
                V::O(proc_oid(&output)),
                V::O(proc_oid(&receive)),
                V::O(proc_oid(&send)),
                s("-"),
                s("-"),
                s("-"),
                s(if len == 8 { "d" } else { "i" }),
                s(if len > 0 { "p" } else { "x" }),
                V::B(false),
                V::O(0),
                V::I(-1),
                V::I(0),
                V::O(if category == "S" { 100 } else { 0 }),
                V::Null,
                V::Null,
                V::Null,
            ]
        })
        .collect()
}

/// The types' I/O functions, so `pg_type.typreceive` joins `pg_proc.oid`.
fn proc_rows() -> Vec<Vec<V>> {
    let mut names: Vec<(String, u32)> = Vec::new();
    for (oid, name, _, _, element, _) in all_types() {
        for function in io_functions(&name, element) {
            if !names.iter().any(|(n, _)| *n == function) {
                names.push((function, oid));
            }
        }
    }
    names
        .into_iter()
        .map(|(name, returns)| {
            // An oidvector's text: input functions read cstring, receive
            // functions internal, output and send functions the type.
            let argument = if name.ends_with("in") {
                2275
            } else if name.ends_with("recv") {
                2281
            } else {
                returns
            };
            vec![
                V::O(proc_oid(&name)),
                V::S(name.clone()),
                V::O(PG_CATALOG_OID),
                V::O(OWNER_OID),
                V::O(12),
                s("f"),
                V::B(false),
                V::B(false),
                s("i"),
                V::I(1),
                V::O(returns),
                V::S(argument.to_string()),
                V::Null,
                V::Null,
                V::Null,
                V::S(name),
            ]
        })
        .collect()
}

fn class_row(oid: u32, name: &str, namespace: u32, kind: &str) -> Vec<V> {
    vec![
        V::O(oid),
        s(name),
        V::O(namespace),
        V::O(0),
        V::O(0),
        V::O(OWNER_OID),
        V::O(if kind == "r" { 2 } else { 0 }),
        V::O(0),
        V::O(0),
        V::I(0),
        V::F(-1.0),
        V::I(0),
        V::O(0),
        V::B(false),
        V::B(false),
        s("p"),
        s(kind),
        V::I(0),
        V::I(0),
        V::B(false),
        V::B(false),
        V::B(false),
        V::B(false),
        V::B(false),
        V::B(true),
        s("d"),
        V::B(false),
        V::O(0),
        V::I(0),
        V::I(0),
        V::Null,
        V::Null,
        V::Null,
    ]
}

fn attribute_row(relation: u32, index: usize, field: &Field) -> Vec<V> {
    let t = pg_field_type(field);
    vec![
        V::O(relation),
        V::S(field.name().clone()),
        V::O(t.oid),
        V::I(-1),
        V::I(i64::from(t.size)),
        V::I(index as i64 + 1),
        V::I(0),
        V::I(-1),
        V::I(i64::from(t.modifier)),
        V::B(matches!(t.size, 1 | 2 | 4 | 8)),
        s("i"),
        s("p"),
        s(""),
        V::B(!field.is_nullable()),
        V::B(false),
        V::B(false),
        s(""),
        s(""),
        V::B(false),
        V::B(true),
        V::I(0),
        V::O(0),
        V::Null,
        V::Null,
        V::Null,
        V::Null,
    ]
}

/// Rows as a batch of `schema`.
fn to_batch(schema: &SchemaRef, rows: Vec<Vec<V>>) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let cells = rows.iter().map(|row| row.get(i).unwrap_or(&V::Null));
        let column: ArrayRef = match field.data_type() {
            DataType::UInt32 => Arc::new(
                cells
                    .map(|v| if let V::O(v) = v { Some(*v) } else { None })
                    .collect::<UInt32Array>(),
            ),
            DataType::Utf8 => Arc::new(
                cells
                    .map(|v| {
                        if let V::S(v) = v {
                            Some(v.as_str())
                        } else {
                            None
                        }
                    })
                    .collect::<StringArray>(),
            ),
            DataType::Boolean => Arc::new(
                cells
                    .map(|v| if let V::B(v) = v { Some(*v) } else { None })
                    .collect::<BooleanArray>(),
            ),
            DataType::Int16 => Arc::new(
                cells
                    .map(|v| integer(v).map(|n| i16::try_from(n).unwrap_or(i16::MAX)))
                    .collect::<Int16Array>(),
            ),
            DataType::Int32 => Arc::new(
                cells
                    .map(|v| integer(v).map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
                    .collect::<Int32Array>(),
            ),
            DataType::Int64 => Arc::new(cells.map(integer).collect::<Int64Array>()),
            DataType::Float32 => Arc::new(
                cells
                    .map(|v| if let V::F(v) = v { Some(*v) } else { None })
                    .collect::<Float32Array>(),
            ),
            // Text arrays: NULL in every catalog row here.
            other => arrow::array::new_null_array(other, rows.len()),
        };
        columns.push(column);
    }
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(DataFusionError::from)
}

fn integer(value: &V) -> Option<i64> {
    if let V::I(n) = value { Some(*n) } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_fills_its_table() {
        for (name, columns) in TABLES {
            let schema = table_schema(columns);
            assert_eq!(schema.fields().len(), columns.len(), "{name}");
        }
        let class = class_row(1, "t", 2, "r");
        assert_eq!(class.len(), TABLES[1].1.len());
        let attribute = attribute_row(1, 0, &Field::new("a", DataType::Int32, true));
        assert_eq!(attribute.len(), TABLES[2].1.len());
        let relation = Relation {
            schema: "cad".into(),
            name: "incidents".into(),
            view: false,
            columns: None,
        };
        let column = column_row(&relation, 0, &Field::new("a", DataType::Int32, true));
        let columns = INFORMATION_TABLES
            .iter()
            .find(|(n, _)| *n == "columns")
            .map(|(_, c)| c.len());
        assert_eq!(Some(column.len()), columns);
        assert_ne!(
            relation_oid("cad", "incidents"),
            relation_oid("rms", "incidents")
        );
        assert!(relation_oid("cad", "incidents") >= 16_384);
    }
}
