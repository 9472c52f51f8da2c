//! A private dbus-daemon in a temp dir, so the simulator never touches the machine's system bus.
//!
//! [`PrivateBus::start`] is for the binary and for tests that own the daemon's lifetime: the
//! daemon is killed by PID and the directory removed on drop. [`shared_test_bus`] is the
//! in-process test harness (docs/bluez-simulator.md §3b): libdbus caches the system-bus address
//! for the whole process, so one bus serves every test of a binary; a `sh` watchdog holding a pipe
//! from the test process kills the daemon when the process exits, however it exits.

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Errors starting the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot prepare the bus directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("dbus-daemon printed no address (is dbus-daemon installed?)")]
    NoAddress,
}

fn bus_config(dir: &std::path::Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path={}/bus</listen><auth>EXTERNAL</auth>
 <policy context="default"><allow user="*"/><allow own="*"/>
  <allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/></policy></busconfig>
"#,
        dir.display()
    )
}

/// A directory name with only address-safe characters (docs/bluez-simulator.md §6.9).
fn fresh_dir(tag: &str) -> Result<PathBuf, BusError> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tm-sim-bluez-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("bus.conf"), bus_config(&dir))?;
    Ok(dir)
}

/// A dbus-daemon owned by this value.
#[derive(Debug)]
pub struct PrivateBus {
    child: Child,
    dir: PathBuf,
    address: String,
}

impl PrivateBus {
    /// Starts the daemon and waits for its address.
    pub fn start() -> Result<Self, BusError> {
        let dir = fresh_dir("bus")?;
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", dir.join("bus.conf").display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let address = line.trim().to_string();
        if address.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(BusError::NoAddress);
        }
        Ok(Self {
            child,
            dir,
            address,
        })
    }

    /// The bus address (`unix:path=...,guid=...`).
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The one private bus of this test process; sets `DBUS_SYSTEM_BUS_ADDRESS` the first time,
/// before any client connects. Call it before anything touches D-Bus.
#[allow(clippy::zombie_processes)] // the watchdog lives as long as the test process
pub fn shared_test_bus() -> &'static str {
    static BUS: OnceLock<(String, Mutex<ChildStdin>)> = OnceLock::new();
    &BUS.get_or_init(|| {
        let dir = fresh_dir("test").expect("temp dir for the test bus");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"dbus-daemon --config-file="$1/bus.conf" --nofork --nopidfile --print-address=1 2>/dev/null & d=$!; read _; kill $d; wait $d; rm -rf "$1""#)
            .arg("sh")
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn dbus-daemon watchdog");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("bus address");
        let address = line.trim().to_string();
        assert!(!address.is_empty(), "dbus-daemon printed no address");
        set_system_bus(&address);
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = stdin.flush();
        (address, Mutex::new(stdin))
    })
    .0
}

#[allow(unsafe_code)]
fn set_system_bus(address: &str) {
    // SAFETY: called once, inside `OnceLock::get_or_init`, before this process opens any D-Bus
    // connection; libdbus reads the variable on first use only.
    unsafe { std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", address) };
}
