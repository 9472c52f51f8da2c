//! The store backend a provider test runs on, chosen for the whole run by `TM_TEST_STORE`:
//! unset or `sqlite` for the SQLite file in the test's directory (the embedded default),
//! `postgres` for a fresh database of its own on the test server ([`crate::postgres`]). The
//! README's test command runs the provider's tests once with each.
//!
//! A test asks for [`TestStore::in_dir`] and writes [`TestStore::setting`] into the provider's
//! configuration; restarting a provider on the same directory finds the same store. Checks
//! that read the store's tables directly go through [`TestStore::rows`] and
//! [`TestStore::execute`] with SQL both backends understand.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::postgres::Database;

/// The backends a test run can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

impl Backend {
    /// The backend of this run: `TM_TEST_STORE` (`sqlite` when unset).
    pub fn of_run() -> Self {
        match std::env::var("TM_TEST_STORE").as_deref() {
            Ok("postgres") => Self::Postgres,
            Ok("sqlite") | Ok("") | Err(_) => Self::Sqlite,
            Ok(other) => panic!("TM_TEST_STORE={other}: expected `sqlite` or `postgres`"),
        }
    }
}

/// The store of one test directory.
#[derive(Debug, Clone)]
pub enum TestStore {
    /// `provider.db` in the directory.
    Sqlite(PathBuf),
    /// A database of its own, kept for as long as the test process runs (a provider restarted
    /// on the directory finds it again).
    Postgres(Arc<Database>),
}

/// The PostgreSQL databases of this process, by test directory.
static DATABASES: Mutex<Option<HashMap<PathBuf, Arc<Database>>>> = Mutex::new(None);

impl TestStore {
    /// The store of `dir` on this run's backend (the same one on every call for a directory).
    pub fn in_dir(dir: &Path) -> Self {
        match Backend::of_run() {
            Backend::Sqlite => Self::Sqlite(dir.join("provider.db")),
            Backend::Postgres => {
                let mut all = DATABASES
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let db = all
                    .get_or_insert_with(HashMap::new)
                    .entry(dir.to_path_buf())
                    .or_insert_with(|| {
                        let label = dir
                            .file_name()
                            .map(|n| n.to_string_lossy().to_lowercase())
                            .unwrap_or_default();
                        Arc::new(Database::create(&format!("p{label}")))
                    });
                Self::Postgres(db.clone())
            }
        }
    }

    /// The `[database]` table of the provider's configuration for this store (a TOML table:
    /// write it after the top-level keys).
    pub fn setting(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("[database]\npath = {:?}\n", path.display().to_string()),
            Self::Postgres(db) => format!(
                "[database]\nurl = \"{}?sslmode=disable\"\npassword_file = {:?}\npool_size = 8\n",
                db.url(),
                db.password_file().display().to_string()
            ),
        }
    }

    /// Runs a query both backends understand; each row's columns as text (NULL as `""`).
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        match self {
            Self::Sqlite(path) => {
                let c = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let mut stmt = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let n = stmt.column_count();
                stmt.query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => String::new(),
                                rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                                rusqlite::types::ValueRef::Real(v) => v.to_string(),
                                rusqlite::types::ValueRef::Text(t) => {
                                    String::from_utf8_lossy(t).into_owned()
                                }
                                rusqlite::types::ValueRef::Blob(b) => {
                                    String::from_utf8_lossy(b).into_owned()
                                }
                            })
                        })
                        .collect()
                })
                .and_then(Iterator::collect)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Self::Postgres(db) => {
                let out = db.query_separated(sql, '\u{1f}');
                out.lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| l.split('\u{1f}').map(str::to_owned).collect())
                    .collect()
            }
        }
    }

    /// The single value a query returns.
    pub fn value(&self, sql: &str) -> String {
        let rows = self.rows(sql);
        assert_eq!(rows.len(), 1, "{sql}: one row expected, got {rows:?}");
        rows[0][0].clone()
    }

    /// Runs a statement both backends understand; the database's error when it fails.
    pub fn execute(&self, sql: &str) -> Result<(), String> {
        match self {
            Self::Sqlite(path) => {
                let c = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
                c.execute_batch(sql).map_err(|e| e.to_string())
            }
            Self::Postgres(db) => db.try_query(sql).map(drop),
        }
    }

    /// Inserts a `sessions` row as the Portal would have written it (both timestamps now).
    pub fn insert_session(&self, session: &crate::store::Session<'_>) {
        let quoted = |v: Option<&str>| v.map_or("NULL".to_owned(), |v| format!("'{v}'"));
        let (carepath, version) = session.carepath.unzip();
        let now = now_rfc3339();
        self.execute(&format!(
            "INSERT INTO sessions (telemonitoring_id, patient_id, prescriber_id, status, \
             carepath_id, carepath_version, created_at, updated_at) \
             VALUES ('{}', '{}', '{}', '{}', {}, {}, '{now}', '{now}')",
            session.id,
            session.patient,
            session.prescriber,
            session.status,
            quoted(carepath),
            quoted(version),
        ))
        .unwrap_or_else(|e| panic!("inserting session {}: {e}", session.id));
    }

    /// Registers an active gateway with Ed25519 public key `public_key` on `session`, as its
    /// enrollment would have.
    pub fn insert_gateway(&self, gateway_id: &str, public_key: &[u8; 32], session: &str) {
        let hex: String = public_key.iter().map(|b| format!("{b:02x}")).collect();
        let key = match self {
            Self::Sqlite(_) => format!("X'{hex}'"),
            Self::Postgres(_) => format!("'\\x{hex}'::bytea"),
        };
        self.execute(&format!(
            "INSERT INTO gateways (gateway_id, public_key, telemonitoring_id, state, \
             enrolled_at) VALUES ('{gateway_id}', {key}, '{session}', 'active', '{}')",
            now_rfc3339()
        ))
        .unwrap_or_else(|e| panic!("inserting gateway {gateway_id}: {e}"));
    }

    /// The MQTT status stored for `gateway_id` and its connection number; `(None, None)`
    /// before the gateway has any health row.
    pub fn mqtt_status(&self, gateway_id: &str) -> (Option<String>, Option<i64>) {
        let rows = self.rows(&format!(
            "SELECT mqtt_status, mqtt_status_connection FROM ops_gateway_health \
             WHERE gateway_id = '{gateway_id}'"
        ));
        match rows.first() {
            None => (None, None),
            Some(row) => (
                Some(row[0].clone()).filter(|s| !s.is_empty()),
                row[1].parse().ok(),
            ),
        }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Now, as the provider writes its text timestamps (RFC 3339, UTC); PostgreSQL reads the same
/// text into `timestamptz`.
fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339()
}
