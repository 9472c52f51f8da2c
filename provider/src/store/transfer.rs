//! Moving a SQLite store to PostgreSQL (`tm-provider migrate-store`): every table copied into
//! an empty PostgreSQL store in one transaction, and the row counts compared before it
//! commits.
//!
//! - The SQLite file is read in one read transaction (a consistent snapshot; stop the
//!   provider first, so that nothing is written after it), table by table in the order their
//!   references need, on a blocking thread that hands rows to the copy in chunks.
//! - Columns are matched by name; each value is converted to the PostgreSQL column's type
//!   (RFC 3339 text to `timestamptz`, 0/1 to `boolean`, integers range-checked). A SQLite
//!   column without a PostgreSQL counterpart stops the copy, naming it: nothing is dropped
//!   silently. A reading's `rowid` becomes its `seq`, so the published snapshots' watermarks
//!   stay where they were; identity sequences continue after the highest copied value.
//! - The store keeps its id ([`super::Store::store_id`]): the provider that served the SQLite
//!   file serves the PostgreSQL store without `--accept-new-store`, and so do the other
//!   instances given the same key files.
//! - The PostgreSQL store must be empty (its migrations applied, no rows); otherwise nothing is
//!   written. On any failure the transaction rolls back and PostgreSQL is left as it was.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::types::Value;
use tokio_postgres::types::ToSql;

use super::StoreError;
use super::postgres::PgStore;

/// The tables, in an order in which every reference points to rows copied before.
pub const TABLES: &[&str] = &[
    "store_pins",
    "sessions",
    "prescriptions",
    "gateways",
    "enrollment_codes",
    "enroll_failures",
    "readings",
    "gateway_heartbeats",
    "session_outputs",
    "hub_outbox",
    "ops_gateway_health",
    "ops_devices",
    "ops_alerts",
    "ops_audit",
    "ops_commands",
    "clinical_alerts",
    "triage_progress",
    "checkin_links",
    "unclaimed_gateways",
    "claim_failures",
    "setup_first_readings",
];

/// Tables of each backend's own bookkeeping, not copied (the store id is carried separately).
const OWN_TABLES: &[&str] = &["schema_migrations", "store_identity"];

/// Rows handed from the reader to the copy at a time.
const CHUNK: usize = 500;

/// Why a store was not copied.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// A store failed (opening, a statement).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The PostgreSQL store already holds rows.
    #[error(
        "the PostgreSQL store is not empty (table {table} has {rows} rows): nothing was copied; \
         migrate into a new database"
    )]
    NotEmpty {
        /// The first table found with rows.
        table: String,
        /// How many.
        rows: i64,
    },
    /// The SQLite file has what the PostgreSQL schema has no place for.
    #[error("nothing was copied: {0}")]
    Schema(String),
    /// A value cannot be converted (no value is printed: it may be a patient's data).
    #[error("nothing was copied: table {table}, row {row}, column {column}: {problem}")]
    Value {
        /// The table.
        table: String,
        /// The row's position in the table (1-based).
        row: u64,
        /// The column.
        column: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The counts differ after the copy (it was rolled back).
    #[error(
        "nothing was copied: table {table} has {source_rows} rows in SQLite but {copied} in \
         PostgreSQL after the copy"
    )]
    Count {
        /// The table.
        table: String,
        /// Rows in the SQLite file.
        source_rows: u64,
        /// Rows in PostgreSQL.
        copied: i64,
    },
}

/// What was copied: each table with its row count (equal on both sides), and the store id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// `(table, rows)` in copy order.
    pub tables: Vec<(String, u64)>,
    /// The store's id, now the PostgreSQL store's.
    pub store_id: String,
}

/// A PostgreSQL column.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

/// The PostgreSQL types the schema uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Bigint,
    Integer,
    Smallint,
    Boolean,
    Bytea,
    Timestamptz,
    Double,
}

impl Kind {
    fn parse(data_type: &str) -> Option<Self> {
        Some(match data_type {
            "text" => Self::Text,
            "bigint" => Self::Bigint,
            "integer" => Self::Integer,
            "smallint" => Self::Smallint,
            "boolean" => Self::Boolean,
            "bytea" => Self::Bytea,
            "timestamp with time zone" => Self::Timestamptz,
            "double precision" => Self::Double,
            _ => return None,
        })
    }
}

/// One table's plan: what the reader selects from SQLite, into which PostgreSQL columns.
#[derive(Debug, Clone)]
struct Plan {
    table: String,
    /// SQLite expressions, one per target column.
    select: Vec<String>,
    targets: Vec<Column>,
    /// Identity columns whose sequence continues after the copy.
    identities: Vec<String>,
}

/// What the reader hands over.
enum Chunk {
    /// A table starts: its row count in SQLite.
    Table(u64),
    Rows(Vec<Vec<Value>>),
}

/// Copies the SQLite store at `sqlite` into the empty PostgreSQL store `pg`.
pub async fn sqlite_to_postgres(sqlite: &Path, pg: &PgStore) -> Result<Copied, TransferError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    for table in TABLES {
        let rows: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(pg.sql())?
            .get(0);
        if rows > 0 {
            return Err(TransferError::NotEmpty {
                table: (*table).to_owned(),
                rows,
            });
        }
    }
    let source = source_tables(sqlite).await?;
    let mut plans = Vec::new();
    for table in TABLES {
        let Some(columns) = source.iter().find(|(t, _)| t == table).map(|(_, c)| c) else {
            return Err(TransferError::Schema(format!(
                "the SQLite store has no table {table}: is it a provider store at the current \
                 version? (start the provider on it once to migrate it)"
            )));
        };
        plans.push(plan(&tx, pg, table, columns).await?);
    }
    let (tx_rows, mut rx_rows) = tokio::sync::mpsc::channel::<Result<Chunk, StoreError>>(4);
    let path = sqlite.to_path_buf();
    let reader_plans = plans.clone();
    let reader = tokio::task::spawn_blocking(move || read_all(&path, &reader_plans, &tx_rows));
    let mut tables = Vec::new();
    for plan in &plans {
        let source_rows = match rx_rows.recv().await {
            Some(Ok(Chunk::Table(n))) => n,
            Some(Err(e)) => return Err(e.into()),
            _ => {
                return Err(TransferError::Schema(
                    "the SQLite reader stopped early".into(),
                ));
            }
        };
        let columns: Vec<&str> = plan.targets.iter().map(|c| c.name.as_str()).collect();
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let insert = tx
            .prepare(&format!(
                "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
                plan.table,
                columns.join(", "),
                placeholders.join(", ")
            ))
            .await
            .map_err(pg.sql())?;
        let mut row_number = 0u64;
        while row_number < source_rows {
            let rows = match rx_rows.recv().await {
                Some(Ok(Chunk::Rows(rows))) => rows,
                Some(Err(e)) => return Err(e.into()),
                _ => {
                    return Err(TransferError::Schema(
                        "the SQLite reader stopped early".into(),
                    ));
                }
            };
            let mut converted = Vec::with_capacity(rows.len());
            for row in rows {
                row_number += 1;
                converted.push(convert_row(plan, row_number, row)?);
            }
            // One round trip for the chunk: the statements are pipelined on the connection.
            let inserts = converted.iter().map(|params| {
                let refs: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                let insert = &insert;
                let tx = &tx;
                async move { tx.execute(insert, &refs).await }
            });
            futures::future::try_join_all(inserts)
                .await
                .map_err(pg.sql())?;
        }
        let copied: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {}", plan.table), &[])
            .await
            .map_err(pg.sql())?
            .get(0);
        if u64::try_from(copied).ok() != Some(source_rows) {
            return Err(TransferError::Count {
                table: plan.table.clone(),
                source_rows,
                copied,
            });
        }
        for column in &plan.identities {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{t}', '{column}'), \
                     COALESCE((SELECT MAX({column}) FROM {t}), 0) + 1, false)",
                    t = plan.table
                ),
                &[],
            )
            .await
            .map_err(pg.sql())?;
        }
        tables.push((plan.table.clone(), source_rows));
    }
    let store_id = reader
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
    tx.execute("DELETE FROM store_identity", &[])
        .await
        .map_err(pg.sql())?;
    tx.execute(
        "INSERT INTO store_identity (store_id) VALUES ($1)",
        &[&store_id],
    )
    .await
    .map_err(pg.sql())?;
    tx.commit().await.map_err(pg.sql())?;
    Ok(Copied { tables, store_id })
}

/// The SQLite file's tables and their columns (not SQLite's own nor each backend's
/// bookkeeping); a table neither copied nor known is refused.
async fn source_tables(sqlite: &Path) -> Result<Vec<(String, Vec<String>)>, TransferError> {
    let path = sqlite.to_path_buf();
    let found = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        let conn = open_read_only(&path)?;
        let err = sqlite_error(&path);
        let mut names = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .map_err(&err)?;
        let names: Vec<String> = names
            .query_map([], |r| r.get(0))
            .map_err(&err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&err)?;
        let mut tables = Vec::new();
        for name in names {
            let mut info = conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{name}')"))
                .map_err(&err)?;
            let columns = info
                .query_map([], |r| r.get(0))
                .map_err(&err)?
                .collect::<rusqlite::Result<Vec<String>>>()
                .map_err(&err)?;
            tables.push((name, columns));
        }
        Ok(tables)
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))??;
    if let Some((unknown, _)) = found
        .iter()
        .find(|(t, _)| !TABLES.contains(&t.as_str()) && !OWN_TABLES.contains(&t.as_str()))
    {
        return Err(TransferError::Schema(format!(
            "the SQLite store has a table {unknown} the copy does not know"
        )));
    }
    Ok(found)
}

/// Matches a table's SQLite columns with its PostgreSQL ones.
async fn plan(
    tx: &tokio_postgres::Transaction<'_>,
    pg: &PgStore,
    table: &str,
    source: &[String],
) -> Result<Plan, TransferError> {
    let rows = tx
        .query(
            "SELECT column_name::text, data_type::text, is_identity::text = 'YES' \
             FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .map_err(pg.sql())?;
    let mut targets = Vec::new();
    let mut select = Vec::new();
    let mut identities = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let data_type: String = row.get(1);
        let identity: bool = row.get(2);
        let kind = Kind::parse(&data_type).ok_or_else(|| {
            TransferError::Schema(format!(
                "column {table}.{name} has type {data_type}, which the copy does not convert"
            ))
        })?;
        let expression = if source.contains(&name) {
            format!("\"{name}\"")
        } else if name == "seq" {
            // A reading's row id on SQLite is its place in the session's history.
            "rowid".to_owned()
        } else {
            continue;
        };
        if identity {
            identities.push(name.clone());
        }
        select.push(expression);
        targets.push(Column { name, kind });
    }
    if let Some(missing) = source
        .iter()
        .find(|c| !targets.iter().any(|t| &t.name == *c))
    {
        return Err(TransferError::Schema(format!(
            "column {table}.{missing} of the SQLite store has no place in the PostgreSQL schema"
        )));
    }
    Ok(Plan {
        table: table.to_owned(),
        select,
        targets,
        identities,
    })
}

/// Reads every planned table in one read transaction, in chunks; returns the store id.
fn read_all(
    path: &Path,
    plans: &[Plan],
    out: &tokio::sync::mpsc::Sender<Result<Chunk, StoreError>>,
) -> Result<String, StoreError> {
    let err = sqlite_error(path);
    let send = |chunk| {
        out.blocking_send(Ok(chunk))
            .map_err(|_| StoreError::Task("the copy stopped".into()))
    };
    let mut conn = open_read_only(path)?;
    let tx = conn.transaction().map_err(&err)?;
    let store_id: String = tx
        .query_row("SELECT store_id FROM store_identity", [], |r| r.get(0))
        .map_err(&err)?;
    for plan in plans {
        let count: i64 = tx
            .query_row(&format!("SELECT count(*) FROM {}", plan.table), [], |r| {
                r.get(0)
            })
            .map_err(&err)?;
        send(Chunk::Table(u64::try_from(count).unwrap_or(0)))?;
        let mut stmt = tx
            .prepare(&format!(
                "SELECT {} FROM {} ORDER BY rowid",
                plan.select.join(", "),
                plan.table
            ))
            .map_err(&err)?;
        let n = plan.select.len();
        let mut rows = stmt.query([]).map_err(&err)?;
        let mut chunk = Vec::with_capacity(CHUNK);
        while let Some(row) = rows.next().map_err(&err)? {
            let values = (0..n)
                .map(|i| row.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(&err)?;
            chunk.push(values);
            if chunk.len() == CHUNK {
                send(Chunk::Rows(std::mem::take(&mut chunk)))?;
            }
        }
        if !chunk.is_empty() {
            send(Chunk::Rows(chunk))?;
        }
    }
    Ok(store_id)
}

fn open_read_only(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite_error(path))
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + use<> {
    let path: PathBuf = path.to_path_buf();
    move |source| StoreError::Sqlite {
        path: path.clone(),
        source,
    }
}

/// A row's values as the PostgreSQL columns' types.
fn convert_row(
    plan: &Plan,
    row_number: u64,
    row: Vec<Value>,
) -> Result<Vec<Box<dyn ToSql + Sync + Send>>, TransferError> {
    plan.targets
        .iter()
        .zip(row)
        .map(|(column, value)| {
            convert(column.kind, value).map_err(|problem| TransferError::Value {
                table: plan.table.clone(),
                row: row_number,
                column: column.name.clone(),
                problem,
            })
        })
        .collect()
}

/// One value as `kind`; `None` (NULL) stays NULL.
fn convert(kind: Kind, value: Value) -> Result<Box<dyn ToSql + Sync + Send>, String> {
    fn int<T: TryFrom<i64> + ToSql + Sync + Send + 'static>(
        value: Value,
    ) -> Result<Box<dyn ToSql + Sync + Send>, String> {
        match value {
            Value::Null => Ok(Box::new(None::<T>)),
            Value::Integer(i) => T::try_from(i)
                .map(|v| Box::new(Some(v)) as Box<dyn ToSql + Sync + Send>)
                .map_err(|_| "an integer out of the column's range".to_owned()),
            other => Err(format!("{} where an integer belongs", type_of(&other))),
        }
    }
    match kind {
        Kind::Bigint => int::<i64>(value),
        Kind::Integer => int::<i32>(value),
        Kind::Smallint => int::<i16>(value),
        Kind::Boolean => match value {
            Value::Null => Ok(Box::new(None::<bool>)),
            Value::Integer(0) => Ok(Box::new(Some(false))),
            Value::Integer(1) => Ok(Box::new(Some(true))),
            other => Err(format!("{} where 0 or 1 belongs", type_of(&other))),
        },
        Kind::Double => match value {
            Value::Null => Ok(Box::new(None::<f64>)),
            #[allow(clippy::cast_precision_loss)]
            Value::Integer(i) => Ok(Box::new(Some(i as f64))),
            Value::Real(r) => Ok(Box::new(Some(r))),
            other => Err(format!("{} where a number belongs", type_of(&other))),
        },
        Kind::Text => match value {
            Value::Null => Ok(Box::new(None::<String>)),
            Value::Text(t) => Ok(Box::new(Some(t))),
            Value::Integer(i) => Ok(Box::new(Some(i.to_string()))),
            other => Err(format!("{} where text belongs", type_of(&other))),
        },
        Kind::Bytea => match value {
            Value::Null => Ok(Box::new(None::<Vec<u8>>)),
            Value::Blob(b) => Ok(Box::new(Some(b))),
            Value::Text(t) => Ok(Box::new(Some(t.into_bytes()))),
            other => Err(format!("{} where bytes belong", type_of(&other))),
        },
        Kind::Timestamptz => match value {
            Value::Null => Ok(Box::new(None::<DateTime<Utc>>)),
            Value::Text(t) => parse_time(&t)
                .map(|t| Box::new(Some(t)) as Box<dyn ToSql + Sync + Send>)
                .ok_or_else(|| "text that is not an RFC 3339 time".to_owned()),
            other => Err(format!("{} where a time belongs", type_of(&other))),
        },
    }
}

/// RFC 3339, or SQLite's own `YYYY-MM-DD HH:MM:SS` (UTC).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real number",
        Value::Text(_) => "text",
        Value::Blob(_) => "bytes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_either_format_and_nothing_else() {
        assert_eq!(
            parse_time("2026-12-03T10:00:00.123456+01:00").unwrap(),
            "2026-12-03T09:00:00.123456Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
        );
        assert_eq!(
            parse_time("2026-12-03 10:00:00").unwrap(),
            "2026-12-03T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_time("t").is_none());
    }

    #[test]
    fn values_are_converted_or_refused_by_type() {
        assert!(convert(Kind::Smallint, Value::Integer(70_000)).is_err());
        assert!(convert(Kind::Integer, Value::Integer(70_000)).is_ok());
        assert!(convert(Kind::Boolean, Value::Integer(2)).is_err());
        assert!(convert(Kind::Timestamptz, Value::Integer(2)).is_err());
        assert!(convert(Kind::Bigint, Value::Text("1".into())).is_err());
        assert!(convert(Kind::Text, Value::Null).is_ok());
    }
}
