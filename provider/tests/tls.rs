//! HTTPS served by the real `tm-provider serve` process with `[tls]`: a client trusting the
//! test's CA gets answers, one trusting another CA and a plain-HTTP client do not; a client that
//! connects and never says anything does not hold up the others; SIGHUP loads a renewed
//! certificate and keeps the current one when the renewal is broken; a Portal body far above the
//! limit gets its 413 answer every time, not a reset connection; a world-readable key stops the
//! start with a message naming it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tm_testkit::net::free_port;
use tm_testkit::pki::TestCa;
use tm_testkit::process::Spawned;

struct Provider {
    child: Spawned,
    url: String,
    log: PathBuf,
}

fn config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("provider.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"https://127.0.0.1:{port}\"\n\
             {store}[tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n",
            store = tm_testkit::backend::TestStore::in_dir(dir).setting(),
            cert = dir.join("server.pem").display(),
            key = dir.join("server.key").display(),
        ),
    )
    .unwrap();
    path
}

fn start(dir: &Path) -> Provider {
    let port = free_port();
    let config = config(dir, port);
    let log = dir.join("provider.log");
    let child = Spawned::start(
        "tm-provider",
        Command::new(env!("CARGO_BIN_EXE_tm-provider"))
            // A PostgreSQL store keeps its key files in the working directory.
            .current_dir(dir)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("TM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the provider did not listen: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Provider {
        child,
        url: format!("https://127.0.0.1:{port}"),
        log,
    }
}

async fn healthz(client: &reqwest::Client, provider: &Provider) -> Result<String, String> {
    let response = client
        .get(format!("{}/healthz", provider.url))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    response.text().await.map_err(|e| format!("{e:?}"))
}

fn hangup(provider: &Provider) {
    assert!(provider.child.signal("HUP"), "SIGHUP not delivered");
}

/// Waits (up to 10 s) until the provider's log holds `needle` `times` times.
fn wait_for_log(provider: &Provider, needle: &str, times: usize) {
    tm_testkit::wait::wait_for_text(&provider.log, needle, times, Duration::from_secs(10));
}

#[tokio::test]
async fn serves_https_with_its_certificate_and_reloads_it_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        TestCa::new(dir.path(), "first-ca"),
        TestCa::new(dir.path(), "second-ca"),
    );
    first.server_cert(dir.path());
    let provider = start(dir.path());

    assert_eq!(
        healthz(&first.https_client(), &provider).await.unwrap(),
        "ok"
    );
    let refused = healthz(&second.https_client(), &provider)
        .await
        .unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(provider.url.replace("https://", "http://") + "/healthz")
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP must not be answered"
    );

    // A client that connects and stays silent does not hold up the next one.
    let port = provider
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(
        healthz(&first.https_client(), &provider).await.unwrap(),
        "ok"
    );
    drop(silent);

    // Renewal under the second CA, loaded on SIGHUP.
    second.server_cert(dir.path());
    hangup(&provider);
    wait_for_log(&provider, "TLS certificate reloaded", 1);
    assert_eq!(
        healthz(&second.https_client(), &provider).await.unwrap(),
        "ok"
    );
    assert!(healthz(&first.https_client(), &provider).await.is_err());

    // A broken renewal is refused; the current certificate stays.
    std::fs::write(dir.path().join("server.pem"), "not a certificate").unwrap();
    hangup(&provider);
    wait_for_log(&provider, "TLS certificate not reloaded", 1);
    assert_eq!(
        healthz(&second.https_client(), &provider).await.unwrap(),
        "ok"
    );
}

#[tokio::test]
async fn a_body_above_the_limit_gets_413_over_https_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    ca.server_cert(dir.path());
    let provider = start(dir.path());
    let client = ca.https_client();
    // Ten times the default Portal limit (64 KiB).
    let body = vec![b'x'; 10 * 64 * 1024];
    for attempt in 0..50 {
        let response = client
            .post(format!("{}/portal/v1/prescriptions", provider.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| {
                std::thread::sleep(Duration::from_millis(500));
                panic!(
                    "attempt {attempt}: no answer: {e:?}\n{}",
                    std::fs::read_to_string(&provider.log).unwrap_or_default()
                )
            });
        assert_eq!(response.status(), 413, "attempt {attempt}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert!(
            answer["message"].as_str().unwrap().contains("larger than"),
            "attempt {attempt}: {answer}"
        );
    }
}

#[test]
fn a_world_readable_key_stops_the_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server.key");
    TestCa::new(dir.path(), "ca")
        .server()
        .write(&dir.path().join("server.pem"), &key);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = config(dir.path(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tm-provider"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("server.key") && stderr.contains("readable by other users"),
        "{stderr}"
    );
}
