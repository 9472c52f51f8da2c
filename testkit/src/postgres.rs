//! A PostgreSQL database for one test binary: a fresh database on the server that
//! `scripts/test` started (`TM_TEST_PG_URL`), or, without it, on a private cluster this module
//! starts itself.
//!
//! A private cluster is made with `initdb` in its own directory, listens on an ephemeral port
//! of 127.0.0.1 only (no Unix socket), asks for a password (SCRAM) like a deployed server, and
//! runs as an unprivileged user: PostgreSQL refuses to run as root, so a test run as root
//! starts it as `postgres` (or `nobody`). The server is the process this module spawned; it is
//! stopped by that PID (immediate shutdown) when the last handle goes away, never by name.
//!
//! ```no_run
//! let db = tm_testkit::postgres::Database::create("ingest");
//! let _url = db.url(); // postgres://tm@127.0.0.1:PORT/tm_ingest_...
//! let _password = db.password_file();
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::net::{free_port, wait_for_port};

/// The role every test database belongs to.
const ROLE: &str = "tm";
/// Its password on a private cluster (a test secret, written to a 0600 file).
const PASSWORD: &str = "tm-test-password";

/// A running server the databases of this test binary live on.
#[derive(Debug)]
struct Server {
    host: String,
    port: u16,
    role: String,
    password_file: PathBuf,
    bin_dir: PathBuf,
    /// The cluster this module started, when it started one: stopped when the server goes.
    _cluster: Option<Cluster>,
}

#[derive(Debug)]
struct Cluster {
    child: Child,
    root: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown of the postmaster this module spawned, and its backends.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Starts a watchdog that stops the postmaster `pid` (SIGQUIT, by the PID this module spawned)
/// and removes `root` once this test process has exited. A server some static still holds
/// (the databases [`crate::backend::TestStore`] keeps per test directory) is never dropped, so
/// without it the cluster would outlive the test binary.
fn stop_when_this_process_ends(pid: u32, root: &Path) {
    // Only while `pid` is still this cluster's postmaster (its command line names `root`): a
    // server stopped earlier may have left its PID to an unrelated process.
    let script = format!(
        "ours() {{ grep -qF -- '{root}' /proc/{pid}/cmdline 2>/dev/null; }}; \
         while kill -0 {me} 2>/dev/null; do sleep 1; done; \
         ours && kill -QUIT {pid}; while ours; do sleep 0.2; done; rm -rf '{root}'",
        me = std::process::id(),
        root = root.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// The server shared by the databases of this process while any of them is alive.
static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A database of its own for a test: created empty, dropped with the handle.
#[derive(Debug)]
pub struct Database {
    name: String,
    server: Arc<Server>,
}

impl Database {
    /// Creates an empty database named after `label`, this process and a counter.
    pub fn create(label: &str) -> Self {
        let server = shared_server();
        let name = format!(
            "tm_{}_{}_{}",
            label.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self::on(server, &name)
    }

    /// Creates an empty database on a private server of its own that also accepts TLS, with a
    /// certificate for `localhost` and 127.0.0.1 issued by `ca`.
    pub fn create_with_tls(label: &str, ca: &crate::pki::TestCa) -> Self {
        let server = Arc::new(Server::private(Some(ca.server())));
        Self::on(server, &format!("tm_{label}"))
    }

    fn on(server: Arc<Server>, name: &str) -> Self {
        server.sql(
            "postgres",
            &format!("CREATE DATABASE {name} OWNER {}", server.role),
        );
        Self {
            name: name.to_owned(),
            server,
        }
    }

    /// `postgres://ROLE@127.0.0.1:PORT/NAME` (the password is in [`Database::password_file`]).
    pub fn url(&self) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.server.role, self.server.host, self.server.port, self.name
        )
    }

    /// A file holding the role's password (mode 0600).
    pub fn password_file(&self) -> &Path {
        &self.server.password_file
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` in this database with psql and returns its unaligned, tuples-only output;
    /// panics when the statement fails.
    pub fn query(&self, sql: &str) -> String {
        self.server.sql(&self.name, sql)
    }

    /// Runs `sql` in this database; the server's error message when it fails.
    pub fn try_query(&self, sql: &str) -> Result<String, String> {
        self.server.try_sql(&self.name, sql)
    }

    /// Runs the query `sql`: one line per row, its columns separated by `separator`.
    pub fn query_separated(&self, sql: &str, separator: char) -> String {
        let mut cmd = self.server.psql(&self.name, sql);
        cmd.args(["-F", &separator.to_string()]);
        let out = cmd.output().expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.server.sql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn shared_server() -> Arc<Server> {
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(server) = shared.upgrade() {
        return server;
    }
    let server = Arc::new(match std::env::var("TM_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Server::external(&url),
        _ => Server::private(None),
    });
    *shared = Arc::downgrade(&server);
    server
}

impl Server {
    /// The server `scripts/test` started: `postgres://ROLE@HOST:PORT` with the password in the
    /// file `TM_TEST_PG_PASSWORD_FILE`.
    fn external(url: &str) -> Self {
        let rest = url
            .strip_prefix("postgres://")
            .expect("TM_TEST_PG_URL is postgres://ROLE@HOST:PORT");
        let rest = rest.split('/').next().unwrap_or(rest);
        let (role, addr) = rest.split_once('@').expect("TM_TEST_PG_URL names its role");
        let (host, port) = addr
            .rsplit_once(':')
            .expect("TM_TEST_PG_URL names its port");
        let password_file = std::env::var_os("TM_TEST_PG_PASSWORD_FILE")
            .map(PathBuf::from)
            .expect("TM_TEST_PG_PASSWORD_FILE names the password of TM_TEST_PG_URL's role");
        Self {
            host: host.to_owned(),
            port: port.parse().expect("TM_TEST_PG_URL's port is a number"),
            role: role.to_owned(),
            password_file,
            bin_dir: bin_dir(),
            _cluster: None,
        }
    }

    /// A cluster of this process's own; with `tls`, it also accepts TLS with that certificate.
    fn private(tls: Option<crate::pki::Issued>) -> Self {
        let bin = bin_dir();
        let root = std::env::temp_dir().join(format!(
            "tm-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&root).unwrap();
        let owner = unprivileged();
        let password_file = root.join("password");
        write_secret(&password_file, PASSWORD);
        let data = root.join("data");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).unwrap();
            std::os::unix::fs::chown(&password_file, Some(uid), Some(gid)).unwrap();
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                ROLE,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .arg(format!("--pwfile={}", password_file.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_user(&mut initdb, owner);
        let out = initdb
            .output()
            .expect("initdb runs (apt-get install postgresql)");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut settings = Vec::new();
        if let Some(issued) = tls {
            let (cert, key) = (root.join("server.pem"), root.join("server.key"));
            issued.write(&cert, &key);
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&cert, Some(uid), Some(gid)).unwrap();
                std::os::unix::fs::chown(&key, Some(uid), Some(gid)).unwrap();
            }
            settings.push("ssl=on".to_owned());
            settings.push(format!("ssl_cert_file={}", cert.display()));
            settings.push(format!("ssl_key_file={}", key.display()));
        }
        let port = free_port();
        let log = std::fs::File::create(root.join("server.log")).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(root.join("server.log"), Some(uid), Some(gid)).unwrap();
        }
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            // A test's database lives as long as the test: durability across power cuts is not
            // what these tests check, so the server skips the flushes.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        as_user(&mut postgres, owner);
        let child = postgres.spawn().expect("postgres starts");
        stop_when_this_process_ends(child.id(), &root);
        wait_for_port(port);
        let server = Self {
            host: "127.0.0.1".into(),
            port,
            role: ROLE.into(),
            password_file,
            bin_dir: bin,
            _cluster: Some(Cluster { child, root }),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .psql("postgres", "SELECT 1")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private PostgreSQL did not accept connections within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn psql(&self, database: &str, sql: &str) -> Command {
        let password = std::fs::read_to_string(&self.password_file).unwrap();
        let mut cmd = Command::new(self.bin_dir.join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", &self.host, "-p", &self.port.to_string()])
            .args(["-U", &self.role, "-d", database, "-c", sql])
            .env("PGPASSWORD", password.trim())
            .stdin(Stdio::null());
        cmd
    }

    fn sql(&self, database: &str, sql: &str) -> String {
        self.try_sql(database, sql)
            .unwrap_or_else(|e| panic!("psql {sql}: {e}"))
    }

    fn try_sql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = self.psql(database, sql).output().expect("psql runs");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

/// The directory of PostgreSQL's programs: `TM_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's layout), else `pg_config --bindir`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TM_PG_BINDIR") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("PostgreSQL is installed (apt-get install postgresql)");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// When run as root: the uid and gid of `postgres`, else of `nobody`.
fn unprivileged() -> Option<(u32, u32)> {
    let me = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = |name: &str| {
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() > 3 && f[0] == name).then(|| (f[2].parse().ok(), f[3].parse().ok()))
        })
    };
    match entry("postgres").or_else(|| entry("nobody")) {
        Some((Some(uid), Some(gid))) => Some((uid, gid)),
        _ => {
            panic!("running as root, and neither `postgres` nor `nobody` exists to run PostgreSQL")
        }
    }
}

fn as_user(cmd: &mut Command, owner: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt as _;
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
        // The server must not start in the test's working directory if it cannot read it.
        cmd.current_dir("/");
    }
}

fn write_secret(path: &Path, value: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(value.as_bytes()).unwrap();
}
