//! The chain's child processes: the shipped binaries, each writing stdout and stderr to its own
//! log file, stopped by the PID we spawned (SIGTERM, then SIGKILL) when dropped, also when a
//! test fails. Nothing here ever signals a process it did not start.
//!
//! `tm-gateway` is the binary cargo built for this test. `tm-provider`, `tm-sim-hub` and
//! `tm-sim-bluez` belong to other workspace members, so cargo does not build them for a test of
//! this crate: [`bins`] runs `cargo build --workspace --bins --features tm-gateway/simulator`
//! once per test run, into the same
//! target directory and profile, so the chain never runs a stale binary. It is the command
//! `scripts/test` and `scripts/demo` run (same packages, so the same unified features): after
//! them it is a no-op, where building only the three packages would compile their dependencies
//! again with another feature set. (It also re-links `tm-gateway` in place, from the same
//! sources.)

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tm_testkit::process::{signal, wait_exit};

/// Paths of the four shipped binaries.
#[derive(Debug)]
pub struct Bins {
    pub gateway: PathBuf,
    pub provider: PathBuf,
    pub hub: PathBuf,
    pub bluez: PathBuf,
}

/// The binaries, built on first use.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let gateway = PathBuf::from(env!("CARGO_BIN_EXE_tm-gateway"));
        let dir = gateway
            .parent()
            .expect("the binary has a directory")
            .to_owned();
        build_workspace_bins(&dir);
        let bins = Bins {
            provider: dir.join("tm-provider"),
            hub: dir.join("tm-sim-hub"),
            bluez: dir.join("tm-sim-bluez"),
            gateway,
        };
        for b in [&bins.provider, &bins.hub, &bins.bluez] {
            assert!(b.exists(), "{} was not built", b.display());
        }
        bins
    })
}

/// `cargo build --workspace --bins` into `bin_dir` (`<target>/<profile>` or
/// `<target>/<triple>/<profile>`), with the cargo that runs this test.
fn build_workspace_bins(bin_dir: &Path) {
    let profile_dir = bin_dir.file_name().unwrap().to_string_lossy().into_owned();
    let profile = if profile_dir == "debug" {
        "dev".to_owned()
    } else {
        profile_dir
    };
    let parent = bin_dir.parent().unwrap();
    // The target directory's root holds cargo's rustc cache (and CACHEDIR.TAG, unless the
    // directory existed before cargo first ran); one level lower is a cross target.
    let is_root =
        |dir: &Path| dir.join(".rustc_info.json").exists() || dir.join("CACHEDIR.TAG").exists();
    let (target_dir, triple) = if is_root(parent) {
        (parent.to_owned(), None)
    } else {
        let root = parent.parent().unwrap();
        (
            root.to_owned(),
            Some(parent.file_name().unwrap().to_string_lossy().into_owned()),
        )
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Without the variables cargo sets for this test process: build scripts track some of
    // them (ring: CARGO_MANIFEST_DIR), and a difference would rebuild everything above them
    // here and again at the next `cargo build`.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&key.as_ref())
        {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--locked",
            "--workspace",
            "--bins",
            // The agent with its simulator, as the tests run it: this build re-links
            // `tm-gateway` in place, and every other test starts that binary.
            "--features",
            "tm-gateway/simulator",
            "--profile",
            &profile,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    if let Some(t) = triple {
        cmd.args(["--target", &t]);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build --workspace --bins failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A child process with its log file.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    /// Its stdin, when started with [`Proc::spawn_controlled`].
    control: Option<std::process::ChildStdin>,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout and stderr appended to `<log_dir>/<name>.log`
    /// (a restarted process continues the same log).
    pub fn spawn(name: &str, cmd: Command, log_dir: &Path) -> Self {
        Self::start(name, cmd, log_dir, false)
    }

    /// Like [`Proc::spawn`], with stdin kept open for [`Proc::send_line`] (the BlueZ
    /// simulator's control commands).
    pub fn spawn_controlled(name: &str, cmd: Command, log_dir: &Path) -> Self {
        Self::start(name, cmd, log_dir, true)
    }

    /// Writes one line to the process's stdin.
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write as _;
        let stdin = self
            .control
            .as_mut()
            .expect("started with spawn_controlled");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn start(name: &str, mut cmd: Command, log_dir: &Path, controlled: bool) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = cmd
            .stdin(if controlled {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_owned(),
            control: child.stdin.take(),
            child: Some(child),
            log,
        }
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Panics (with the log's tail) when the process has exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("started");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{} exited ({status}); its log ends with:\n{}",
                self.name,
                tail(&self.log, 40)
            );
        }
    }

    /// SIGKILL, and waits for it.
    pub fn kill(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("started");
        let _ = child.kill();
        child.wait().unwrap()
    }

    /// SIGTERM, then waits up to `limit` for the process to exit by itself.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("started");
        let _ = signal(&child, "TERM");
        match wait_exit(&mut child, limit) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not stop within {limit:?} of SIGTERM; its log ends with:\n{}",
                    self.name,
                    tail(&self.log, 40)
                );
            }
        }
    }
}

impl Drop for Proc {
    /// SIGTERM first, so the BlueZ simulator can stop its dbus-daemon and remove its
    /// directory; SIGKILL when that takes more than 5 s.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            let _ = signal(&child, "TERM");
            if wait_exit(&mut child, Duration::from_secs(5)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs a command to completion; panics with its output when it fails.
pub fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command to completion whatever its exit status and returns its stdout; panics when
/// it cannot be started or was killed by a signal.
pub fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.code().is_some(),
        "{what} was killed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
