//! `tm-gateway run` under systemd (`Type=notify`): it says READY=1 once its actors run, pings
//! WATCHDOG=1 while its sync loop turns (even when the provider is unreachable and BlueZ is
//! missing: the loop still makes progress), and says STOPPING=1 on SIGTERM.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tm_protocol::{SigningKey, Transport};

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

/// Kills the agent if the test fails before it stopped.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_notifies_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let gw = common::GatewaySide::new(dir.path(), "");
    let (provider_key, _) = SigningKey::generate().unwrap();
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    gw.enroll(&provider_key, Transport::Https, &closed);

    let socket_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut child = Spawned(
        Command::new(env!("CARGO_BIN_EXE_tm-gateway"))
            .arg("--config")
            .arg(&gw.config)
            .arg("run")
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "400000")
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
            .env("TM_LOG", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let first = messages_until(&sock, "READY=1", Duration::from_secs(20));
    assert!(first.contains(&"READY=1".to_owned()), "{first:?}");
    let pings = messages_until(&sock, "WATCHDOG=1", Duration::from_secs(5));
    assert!(pings.contains(&"WATCHDOG=1".to_owned()), "{pings:?}");

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let last = messages_until(&sock, "STOPPING=1", Duration::from_secs(10));
    let status = child.0.wait().unwrap();
    assert!(last.contains(&"STOPPING=1".to_owned()), "{last:?}");
    assert!(status.success(), "agent exit status {status}");
}
