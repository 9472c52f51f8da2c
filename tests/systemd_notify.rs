//! `tm-gateway run` under systemd (`Type=notify`): it says READY=1 once its actors run, pings
//! WATCHDOG=1 while both its BLE and sync loops turn (also when the provider is unreachable,
//! the syncer backs off, and BlueZ is missing: both loops still make progress), stops pinging
//! when the BLE loop is stuck in a call into the system bus that never returns, and says
//! STOPPING=1 on SIGTERM.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tm_protocol::{SigningKey, Transport};
use tm_testkit::process::Spawned;

fn messages_until(sock: &UnixDatagram, want: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg == want;
            seen.push(msg);
            if done {
                break;
            }
        }
    }
    seen
}

/// Starts `tm-gateway run` with a 400 ms watchdog, its system bus at `bus` and readings for a
/// provider that is not there.
fn spawn(gw: &common::GatewaySide, socket: &std::path::Path, bus: &str, log: &str) -> Spawned {
    Spawned::start(
        "tm-gateway",
        Command::new(env!("CARGO_BIN_EXE_tm-gateway"))
            .arg("--config")
            .arg(&gw.config)
            .args(["run", "--simulate-readings", "20"])
            .env("NOTIFY_SOCKET", socket)
            .env("WATCHDOG_USEC", "400000")
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
            .env("TM_LOG", log)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
}

fn gateway(dir: &std::path::Path) -> common::GatewaySide {
    let gw = common::GatewaySide::new(dir, "");
    let (provider_key, _) = SigningKey::generate().unwrap();
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    gw.enroll(&provider_key, Transport::Https, &closed);
    gw
}

fn notify_socket(dir: &std::path::Path) -> (std::path::PathBuf, UnixDatagram) {
    let socket_path = dir.join("notify");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    (socket_path, sock)
}

/// Every datagram received within `window`.
fn collect(sock: &UnixDatagram, window: Duration) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    seen
}

#[test]
fn run_notifies_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path());
    let (socket_path, sock) = notify_socket(dir.path());
    // No BlueZ on this bus: the BLE side retries (1 s, 2 s, 4 s...) while the syncer backs
    // off from the closed provider port.
    let mut child = spawn(&gw, &socket_path, "unix:path=/nonexistent/bus", "off");

    let first = messages_until(&sock, "READY=1", Duration::from_secs(20));
    assert!(first.contains(&"READY=1".to_owned()), "{first:?}");
    // Both loops keep turning through their retries: a ping every 200 ms, for 5 s (a loop
    // that slept through its retry delays would stop them within the first two seconds).
    let pings = collect(&sock, Duration::from_secs(5));
    let n = pings.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(n >= 15, "{n} pings in 5 s: {pings:?}");

    assert!(child.signal("TERM"));
    let last = messages_until(&sock, "STOPPING=1", Duration::from_secs(10));
    let status = child.child().wait().unwrap();
    assert!(last.contains(&"STOPPING=1".to_owned()), "{last:?}");
    assert!(status.success(), "agent exit status {status}");
}

#[test]
fn a_stuck_ble_loop_stops_the_watchdog_pings() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path());
    let (socket_path, sock) = notify_socket(dir.path());
    // A system bus that accepts connections and never answers: the BLE loop's first call
    // into D-Bus never returns (a hung dbus-daemon or bluetoothd).
    let bus_path = dir.path().join("silent-bus");
    let bus = std::os::unix::net::UnixListener::bind(&bus_path).unwrap();
    let held = std::thread::spawn(move || {
        let mut connections = Vec::new();
        for stream in bus.incoming() {
            match stream {
                Ok(s) => connections.push(s),
                Err(_) => break,
            }
        }
    });
    let mut child = spawn(
        &gw,
        &socket_path,
        &format!("unix:path={}", bus_path.display()),
        "error",
    );

    let first = messages_until(&sock, "READY=1", Duration::from_secs(20));
    assert!(first.contains(&"READY=1".to_owned()), "{first:?}");
    // After one watchdog interval of grace no ping comes, while the sync loop still turns.
    let _ = collect(&sock, Duration::from_millis(800));
    let later = collect(&sock, Duration::from_secs(3));
    assert!(
        !later.contains(&"WATCHDOG=1".to_owned()),
        "pinged while the BLE loop is stuck: {later:?}"
    );
    // The agent says which loop is stuck.
    child.kill();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.child().stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("a loop made no progress") && stderr.contains("ble"),
        "{stderr}"
    );
    drop(held);
}
