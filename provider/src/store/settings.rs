//! The `database` setting: which backend holds the store.
//!
//! ```toml
//! database = "provider.db"            # SQLite, the embedded default
//!
//! [database]                          # or PostgreSQL, shared by several provider instances
//! url = "postgres://tm@db.hospital.example:5432/telemonitoring"
//! password_file = "/etc/tm-provider/database-password"
//! ca_file = "/etc/tm-provider/database-ca.pem"
//! pool_size = 16
//! ```
//!
//! The password never sits in the URL or the configuration: it is read from `password_file`
//! (trimmed) at start. TLS is required and verified against `ca_file`; only a server on a
//! loopback address may be reached without it, by `?sslmode=disable` in the URL.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use tm_protocol::config_file::ConfigError;

/// Connections in the pool when `pool_size` is not set.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Most connections a pool may hold.
const MAX_POOL_SIZE: usize = 512;

/// The setting as written: a file path, or a `[database]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DatabaseFile {
    /// `database = "provider.db"`: the SQLite file.
    Path(PathBuf),
    /// `[database]` with `path` (SQLite) or `url` (PostgreSQL).
    Section(DatabaseSection),
}

/// The `[database]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// The SQLite file (instead of `url`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `postgres://USER@HOST:PORT/DATABASE`, without a password.
    #[serde(default)]
    pub url: Option<String>,
    /// File holding the database user's password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM file with the certificate authorities the server's certificate is verified against.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Connections in the pool.
    #[serde(default)]
    pub pool_size: Option<usize>,
}

/// Where the store lives, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// The embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server.
    Postgres(PostgresSettings),
}

/// A PostgreSQL server and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// The URL as configured (no password in it).
    pub url: String,
    /// The password, read from `password_file`.
    pub password: Option<String>,
    /// Trusted roots for the server's certificate; `None` only with `sslmode=disable`.
    pub ca_file: Option<PathBuf>,
    /// Whether TLS is off (`sslmode=disable`, loopback servers only).
    pub plaintext: bool,
    /// Connections in the pool.
    pub pool_size: usize,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("plaintext", &self.plaintext)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

fn invalid(field: &str, problem: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("database.{field}: {problem}"))
}

impl Database {
    /// Validates the setting; relative paths are taken as written (the working directory).
    pub fn from_file(file: DatabaseFile) -> Result<Self, ConfigError> {
        let section = match file {
            DatabaseFile::Path(path) => return Ok(Self::Sqlite(path)),
            DatabaseFile::Section(section) => section,
        };
        match (section.path, section.url) {
            (Some(_), Some(_)) => Err(invalid("url", "set either `path` (SQLite) or `url`")),
            (None, None) => Err(invalid("url", "set `path` (SQLite) or `url` (PostgreSQL)")),
            (Some(path), None) => {
                let extra = section.password_file.is_some()
                    || section.ca_file.is_some()
                    || section.pool_size.is_some();
                if extra {
                    return Err(invalid(
                        "path",
                        "password_file, ca_file and pool_size belong to a PostgreSQL `url`",
                    ));
                }
                Ok(Self::Sqlite(path))
            }
            (None, Some(url)) => Ok(Self::Postgres(PostgresSettings::new(
                url,
                section.password_file.as_deref(),
                section.ca_file,
                section.pool_size,
            )?)),
        }
    }

    /// The directory the default key files go to: beside the SQLite file, or the working
    /// directory for a PostgreSQL store.
    pub fn key_dir(&self) -> PathBuf {
        match self {
            Self::Sqlite(path) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
            Self::Postgres(_) => PathBuf::new(),
        }
    }
}

impl PostgresSettings {
    /// Checks a PostgreSQL URL and reads its password file.
    pub fn new(
        url: String,
        password_file: Option<&Path>,
        ca_file: Option<PathBuf>,
        pool_size: Option<usize>,
    ) -> Result<Self, ConfigError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| invalid("url", format!("not a PostgreSQL URL: {e}")))?;
        if config.get_password().is_some() {
            return Err(invalid(
                "url",
                "holds a password: put it in `password_file` instead",
            ));
        }
        if config.get_user().is_none() {
            return Err(invalid(
                "url",
                "names no user (postgres://USER@HOST/DATABASE)",
            ));
        }
        let hosts = config.get_hosts();
        if hosts.is_empty() {
            return Err(invalid("url", "names no host"));
        }
        let plaintext = config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable;
        if plaintext {
            let loopback = hosts.iter().all(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => {
                    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
                }
                tokio_postgres::config::Host::Unix(_) => true,
            });
            if !loopback {
                return Err(invalid(
                    "url",
                    "sslmode=disable is only allowed for a server on a loopback address",
                ));
            }
        } else if ca_file.is_none() {
            return Err(invalid(
                "ca_file",
                "required: the server's certificate is verified against it (or \
                 ?sslmode=disable for a server on a loopback address)",
            ));
        }
        let password = match password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| invalid("password_file", format!("{}: {e}", path.display())))?;
                let text = text.trim().to_owned();
                if text.is_empty() {
                    return Err(invalid(
                        "password_file",
                        format!("{} is empty", path.display()),
                    ));
                }
                Some(text)
            }
            None => None,
        };
        let pool_size = pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        if pool_size == 0 || pool_size > MAX_POOL_SIZE {
            return Err(invalid(
                "pool_size",
                format!("must be between 1 and {MAX_POOL_SIZE}"),
            ));
        }
        Ok(Self {
            url,
            password,
            ca_file,
            plaintext,
            pool_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Database, ConfigError> {
        #[derive(Deserialize)]
        struct F {
            database: DatabaseFile,
        }
        let f: F = toml::from_str(text).map_err(|e| invalid("", e.to_string()))?;
        Database::from_file(f.database)
    }

    fn problem(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_path_is_sqlite_either_way() {
        assert_eq!(
            parse("database = 'p.db'").unwrap(),
            Database::Sqlite("p.db".into())
        );
        assert_eq!(
            parse("[database]\npath = 'p.db'").unwrap(),
            Database::Sqlite("p.db".into())
        );
        assert!(problem("[database]\npath = 'p.db'\npool_size = 4").contains("PostgreSQL"));
        assert!(problem("[database]\npath = 'p.db'\nurl = 'postgres://u@h/d'").contains("either"));
        assert!(problem("[database]\npool_size = 4").contains("set `path`"));
    }

    #[test]
    fn a_postgres_url_needs_tls_a_user_and_no_password_inside() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let text = format!(
            "[database]\nurl = 'postgres://tm@db.example/tm'\nca_file = 'ca.pem'\n\
             password_file = '{}'",
            pw.display()
        );
        let Database::Postgres(pg) = parse(&text).unwrap() else {
            panic!()
        };
        assert_eq!(pg.password.as_deref(), Some("s3cret"));
        assert_eq!(pg.pool_size, DEFAULT_POOL_SIZE);
        assert!(!pg.plaintext);
        assert!(
            !format!("{pg:?}").contains("s3cret"),
            "the password is not printed"
        );

        assert!(problem("[database]\nurl = 'postgres://tm@db.example/tm'").contains("ca_file"));
        assert!(
            problem("[database]\nurl = 'postgres://tm:pw@127.0.0.1/tm?sslmode=disable'")
                .contains("password_file")
        );
        assert!(
            problem("[database]\nurl = 'postgres://db.example/tm'\nca_file='c'").contains("user")
        );
        assert!(problem("[database]\nurl = 'mysql://x'").contains("not a PostgreSQL URL"));
        assert!(
            problem("[database]\nurl = 'postgres://tm@db.example/tm?sslmode=disable'")
                .contains("loopback")
        );
        let local = "[database]\nurl = 'postgres://tm@127.0.0.1:5433/tm?sslmode=disable'";
        let Database::Postgres(pg) = parse(local).unwrap() else {
            panic!()
        };
        assert!(pg.plaintext);
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let text = format!("{local}\npassword_file = '{}'", empty.display());
        assert!(problem(&text).contains("is empty"));
        assert!(problem(&format!("{local}\npool_size = 0")).contains("between"));
    }
}
