//! Reading a TOML configuration file, for the gateway agent and the provider alike.
//!
//! Each binary has its own file shape and its own validation; what they share is how a file
//! that cannot be used is reported: which file, and whether it could not be read, is not TOML
//! of the expected shape, or holds a value out of range. A file that does not exist says where
//! the example to copy lives and how to name another file, because that is the first error a
//! new user meets.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}{hint}")]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
        /// What to do about it, with its leading space, when there is something to say (a
        /// missing file); empty otherwise.
        hint: String,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("configuration {path} is invalid: {message}")]
    Parse {
        /// The configuration file (empty when text was parsed without one).
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Where a binary's configuration comes from, for the hint a missing file gets.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The example in the source tree to copy, e.g. `config/gateway.example.toml`.
    pub example: &'static str,
    /// The environment variable that names another file, e.g. `TM_GATEWAY_CONFIG`.
    pub env: &'static str,
}

/// Reads the file at `path` and parses it as `T`.
pub fn read<T: DeserializeOwned>(path: &Path, origin: Origin) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        let hint = if source.kind() == std::io::ErrorKind::NotFound {
            format!(
                " (copy {} to {}, or name another file with --config PATH or {})",
                origin.example,
                path.display(),
                origin.env
            )
        } else {
            String::new()
        };
        ConfigError::Read {
            path: path.to_path_buf(),
            source,
            hint,
        }
    })?;
    parse(&text, path)
}

/// Parses configuration text as `T`; `path` names it in the error.
pub fn parse<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Origin = Origin {
        example: "config/x.example.toml",
        env: "TM_X_CONFIG",
    };

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Shape {
        #[allow(dead_code)]
        port: u16,
    }

    #[test]
    fn a_missing_file_says_what_to_copy_and_how_to_name_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        let e = read::<Shape>(&path, ORIGIN).unwrap_err().to_string();
        assert!(e.starts_with(&format!("cannot read configuration {}", path.display())));
        assert!(
            e.ends_with(&format!(
                "(copy config/x.example.toml to {}, or name another file with --config PATH or \
                 TM_X_CONFIG)",
                path.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn an_unreadable_file_gets_no_hint() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be read as a file: not "not found", so no copy hint.
        let e = read::<Shape>(dir.path(), ORIGIN).unwrap_err().to_string();
        assert!(e.starts_with("cannot read configuration"), "{e}");
        assert!(!e.contains("copy"), "{e}");
    }

    #[test]
    fn a_wrong_shape_names_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "port = 1\nprot = 2\n").unwrap();
        let e = read::<Shape>(&path, ORIGIN).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("prot"),
            "{e}"
        );
    }
}
