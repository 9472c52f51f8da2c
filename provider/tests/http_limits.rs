//! The limits of the real `tm-provider serve` process's HTTP server (`[http]`), attacked from
//! outside over loopback: a client sending its headers a byte a second is disconnected after
//! the header timeout, one trickling its body after the body timeout; connections beyond the cap
//! are answered 503 and closed, and service resumes when they go; and with fewer file descriptors than
//! idle connections the provider keeps running, answers again once the idle connections time
//! out, and still ingests.

mod fixtures;
mod registry;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use tm_protocol::{GatewayId, MessageKind, ReadingBatch, SigningKey, TimeQuality};
use tm_testkit::net::free_port;
use tm_testkit::process::Spawned;

struct Provider {
    child: Spawned,
    port: u16,
    log: PathBuf,
}

impl Provider {
    /// Panics with the log when the process has ended.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait() {
            panic!(
                "the provider exited ({status}):\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Starts the provider on `dir` with `extra` configuration; with `max_files`, under that
/// RLIMIT_NOFILE (set for the provider process only).
fn start(dir: &Path, extra: &str, max_files: Option<u32>) -> Provider {
    tm_provider::install_crypto_provider();
    let port = free_port();
    let config = dir.join("provider.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             {}{extra}",
            tm_testkit::backend::TestStore::in_dir(dir).setting(),
        ),
    )
    .unwrap();
    let log = dir.join("provider.log");
    let binary = env!("CARGO_BIN_EXE_tm-provider");
    let mut command = match max_files {
        None => Command::new(binary),
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(binary);
            c
        }
    };
    let child = Spawned::start(
        "tm-provider",
        command
            // A PostgreSQL store keeps its key files in the working directory.
            .current_dir(dir)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("TM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let mut provider = Provider { child, port, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        provider.assert_running();
        assert!(Instant::now() < deadline, "the provider did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    provider
}

/// Whether the server closed `stream`, waiting at most `wait` for it; what it sent is appended
/// to `answer`.
fn closed_within(stream: &mut TcpStream, wait: Duration, answer: &mut Vec<u8>) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Sends `head`, then one byte of `trickle` a second until the server closes the connection;
/// returns how long after the head that took (`None`: still open after `bound`) and what the
/// server answered.
fn trickle(port: u16, head: &str, bound: Duration) -> (Option<Duration>, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < bound {
        if stream.write_all(b"a").is_err()
            || closed_within(&mut stream, Duration::from_secs(1), &mut answer)
        {
            return (
                Some(started.elapsed()),
                String::from_utf8_lossy(&answer).into(),
            );
        }
    }
    (None, String::from_utf8_lossy(&answer).into())
}

#[test]
fn a_client_sending_its_headers_a_byte_a_second_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = start(dir.path(), "[http]\nheader_timeout_s = 2\n", None);
    let head = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let (closed, _) = trickle(provider.port, head, Duration::from_secs(20));
    let closed = closed.expect("still connected after 20 s of header trickle");
    assert!(
        closed >= Duration::from_millis(1500) && closed < Duration::from_secs(6),
        "closed after {closed:?}, header timeout 2 s"
    );
    provider.assert_running();
}

#[test]
fn a_client_trickling_its_body_is_answered_408_and_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = start(dir.path(), "[http]\nbody_timeout_s = 2\n", None);
    let head = "POST /portal/v1/prescriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    let (closed, answer) = trickle(provider.port, head, Duration::from_secs(25));
    let closed = closed.expect("still connected after 25 s of body trickle");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The body timeout, then at most the linger of the last answer.
    assert!(
        closed >= Duration::from_millis(1500) && closed < Duration::from_secs(10),
        "closed after {closed:?}, body timeout 2 s"
    );
    provider.assert_running();
}

async fn healthz(provider: &Provider) -> Result<String, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .get(provider.url("/healthz"))
        .send()
        .await?
        .text()
        .await
}

/// Waits (at most `bound`) until /healthz answers, checking that the process still runs.
async fn wait_healthy(provider: &mut Provider, bound: Duration) -> Duration {
    let started = Instant::now();
    loop {
        provider.assert_running();
        if healthz(provider).await.is_ok_and(|t| t == "ok") {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "no /healthz answer within {bound:?}:\n{}",
            provider.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_are_answered_503_and_service_resumes_when_they_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = start(
        dir.path(),
        "[http]\nmax_connections = 4\nheader_timeout_s = 60\n",
        None,
    );
    wait_healthy(&mut provider, Duration::from_secs(5)).await;
    // The health check's connection is gone before the cap is filled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle: Vec<_> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", provider.port)).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut extra = TcpStream::connect(("127.0.0.1", provider.port)).unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut answer = Vec::new();
    assert!(
        closed_within(&mut extra, Duration::from_secs(3), &mut answer),
        "a connection beyond the cap was kept: {}\n{}",
        String::from_utf8_lossy(&answer),
        provider.log()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(answer.contains("retry-after: 1\r\n"), "{answer}");
    assert!(
        answer.ends_with("too many connections; retry in a second\"}"),
        "{answer}"
    );
    let busy = healthz(&provider).await.unwrap();
    assert!(busy.contains("too many connections"), "{busy}");
    let log = provider.log();
    assert_eq!(log.matches("connection limit reached").count(), 1, "{log}");
    drop(idle);
    let after = wait_healthy(&mut provider, Duration::from_secs(5)).await;
    assert!(after < Duration::from_secs(2), "answered {after:?} after");
    provider.assert_running();
}

/// A gateway registered in the store of `dir`.
async fn register(dir: &Path) -> (GatewayId, SigningKey) {
    let (key, _) = SigningKey::generate().unwrap();
    let gateway = GatewayId::new("gw-files").unwrap();
    registry::register(
        &tm_testkit::backend::TestStore::in_dir(dir),
        &gateway,
        &key.verifying_key(),
    )
    .await;
    (gateway, key)
}

#[tokio::test]
async fn running_out_of_files_does_not_stop_the_provider() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, key) = register(dir.path()).await;
    std::fs::write(dir.path().join("hub-secret"), "s3cret").unwrap();
    // The HUB outbox reads the store every few seconds; the HUB itself is not reachable.
    let extra = format!(
        "[http]\nheader_timeout_s = 3\nmax_connections = 1000\n\
         [hub]\nurl = \"http://127.0.0.1:{}\"\nclient_id = \"provider\"\n\
         client_secret_file = \"{}\"\n",
        free_port(),
        dir.path().join("hub-secret").display()
    );
    let mut provider = start(dir.path(), &extra, Some(64));
    wait_healthy(&mut provider, Duration::from_secs(5)).await;

    // Twice as many silent connections as the process may open files.
    let idle: Vec<_> = (0..128)
        .map(|_| TcpStream::connect(("127.0.0.1", provider.port)).unwrap())
        .collect();
    // Long enough for the outbox to meet the exhausted descriptors at least once.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        provider.assert_running();
    }
    // The silent connections time out (header timeout) and /healthz is answered again, while
    // the test still holds its side of every one.
    wait_healthy(&mut provider, Duration::from_secs(40)).await;
    let log = provider.log();
    assert!(log.contains("accepting connections failed"), "{log}");

    // Ingest still works.
    let reading = fixtures::reading(
        "2A35",
        &fixtures::bp_frame(121, 79, 95, 64),
        fixtures::omron_cuff(),
        Utc::now().fixed_offset(),
        TimeQuality::DeviceSynced,
    );
    let batch = ReadingBatch {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id: gateway.clone(),
        batch_id: "files-1".parse().unwrap(),
        created_at: Utc::now(),
        readings: vec![reading],
    };
    let frame = tm_protocol::seal(
        MessageKind::ReadingBatch,
        gateway.as_str(),
        &tm_protocol::encode(&batch),
        &key,
    );
    let r = reqwest::Client::new()
        .post(provider.url(tm_protocol::routes::http::READINGS))
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", provider.log());
    drop(idle);
    wait_healthy(&mut provider, Duration::from_secs(5)).await;
    provider.assert_running();
}
