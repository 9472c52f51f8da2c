//! `tm-gateway doctor` as a support engineer runs it: it names a missing adapter, an
//! unreachable provider and an unenrolled gateway, says how to fix each, and exits non-zero.
//! BlueZ is the simulator on a private bus; the provider address is a closed loopback port, then
//! an HTTPS server whose certificate the gateway trusts only through `[sync] ca_file`.

mod common;

use std::path::Path;
use std::process::Command;

use common::pki::TestCa;
use serde_json::Value;
use tm_protocol::{GatewayId, SyncSettings, Transport};

fn doctor(config: &Path, bus: &str) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_tm-gateway"))
        .arg("--config")
        .arg(config)
        .args(["doctor", "--json"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .env_remove("TM_GATEWAY_CONFIG")
        .output()
        .expect("run tm-gateway doctor");
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), json)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

fn setup(dir: &Path, adapter: &str) -> std::path::PathBuf {
    let state = dir.join("state");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!("state_dir = {state:?}\n[ble]\nadapter = \"{adapter}\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tm-gateway"))
        .arg("--config")
        .arg(&config)
        .arg("identity")
        .output()
        .unwrap();
    assert!(out.status.success());
    config
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_each_problem_and_its_fix() {
    let bus = tm_sim_bluez::bus::PrivateBus::start().expect("dbus-daemon");
    let fake = tm_sim_bluez::FakeBluez::start(bus.address(), vec![])
        .await
        .expect("simulator");
    let dir = tempfile::tempdir().unwrap();

    // The adapter the configuration names is not there.
    let config = setup(dir.path(), "hci1");
    let (code, report) = tokio::task::spawn_blocking({
        let (config, bus) = (config.clone(), bus.address().to_owned());
        move || doctor(&config, &bus)
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert_eq!(report["ok"], false);
    let bluez = check(&report, "bluez");
    assert_eq!(bluez["verdict"], "fail");
    let detail = bluez["detail"].as_str().unwrap();
    assert!(detail.contains("adapter hci1 not found"), "{detail}");
    assert!(
        detail.contains("hci0"),
        "lists the adapters present: {detail}"
    );
    assert!(bluez["fix"].as_str().unwrap().contains("ble.adapter"));

    // Not enrolled: said plainly, with the command that fixes it; identity is fine.
    let enrollment = check(&report, "enrollment");
    assert_eq!(enrollment["verdict"], "fail");
    assert!(
        enrollment["detail"]
            .as_str()
            .unwrap()
            .contains("not enrolled")
    );
    assert!(
        enrollment["fix"]
            .as_str()
            .unwrap()
            .contains("tm-gateway enroll")
    );
    assert_eq!(check(&report, "identity")["verdict"], "ok");

    // Not enrolled but naming its provider: waiting to be claimed, a warning only.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[provider]\nurl = \"https://provider.example.org\"\n");
    std::fs::write(&config, text).unwrap();
    let (_, report) = tokio::task::spawn_blocking({
        let (config, bus) = (config.clone(), bus.address().to_owned());
        move || doctor(&config, &bus)
    })
    .await
    .unwrap();
    let waiting = check(&report, "enrollment");
    assert_eq!(waiting["verdict"], "warn", "{waiting}");
    assert!(
        waiting["detail"]
            .as_str()
            .unwrap()
            .contains("to be claimed"),
        "{waiting}"
    );

    // The right adapter, enrolled, but the provider is unreachable.
    let config = setup(dir.path(), "hci0");
    let port = closed_port();
    let enrollment = tm_gateway::enrollment::Enrollment {
        gateway_id: GatewayId::new("gw-doctor").unwrap(),
        provider_url: format!("http://127.0.0.1:{port}"),
        provider_public_key: vec![1; 32],
        sync: SyncSettings {
            transport: Transport::Https,
            https_url: format!("http://127.0.0.1:{port}"),
            mqtt_url: None,
            heartbeat_interval_s: 60,
        },
        enrolled_at: chrono::Utc::now(),
    };
    enrollment.save(&dir.path().join("state")).unwrap();
    let (code, report) = tokio::task::spawn_blocking({
        let (config, bus) = (config.clone(), bus.address().to_owned());
        move || doctor(&config, &bus)
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    let bluez = check(&report, "bluez");
    assert_eq!(bluez["verdict"], "fail");
    assert!(
        bluez["detail"].as_str().unwrap().contains("powered off"),
        "{bluez}"
    );
    assert!(bluez["fix"].as_str().unwrap().contains("power on"));

    // Power the adapter on, as `bluetoothctl power on` does (Properties.Set on Adapter1).
    let conn = zbus::connection::Builder::address(bus.address())
        .build()
        .await
        .unwrap();
    conn.call_method(
        Some("org.bluez"),
        "/org/bluez/hci0",
        Some("org.freedesktop.DBus.Properties"),
        "Set",
        &("org.bluez.Adapter1", "Powered", zbus::Variant::from(true)),
    )
    .await
    .unwrap();
    let (code, report) = tokio::task::spawn_blocking({
        let (config, bus) = (config.clone(), bus.address().to_owned());
        move || doctor(&config, &bus)
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert_eq!(check(&report, "bluez")["verdict"], "ok", "{report}");
    assert_eq!(check(&report, "enrollment")["verdict"], "ok");
    let provider = check(&report, "provider");
    assert_eq!(provider["verdict"], "fail");
    assert!(
        provider["detail"].as_str().unwrap().contains("unreachable"),
        "{provider}"
    );

    // The provider comes up: the network check passes.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let (_, report) = tokio::task::spawn_blocking({
        let (config, bus) = (config.clone(), bus.address().to_owned());
        move || doctor(&config, &bus)
    })
    .await
    .unwrap();
    assert_eq!(check(&report, "provider")["verdict"], "ok", "{report}");
    server.abort();
    drop(fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_provider_certificate_is_named_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "private-ca");
    let (cert_file, key_file) = ca.server_cert(dir.path());
    let certificates =
        tm_provider::http::tls::Certificates::load(tm_provider::http::tls::TlsSection {
            cert_file,
            key_file,
        })
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(tm_provider::http::serve_with(
        listener,
        Some(certificates),
        app,
        stop.clone(),
    ));

    let config = setup(dir.path(), "hci0");
    tm_gateway::enrollment::Enrollment {
        gateway_id: GatewayId::new("gw-doctor").unwrap(),
        provider_url: url.clone(),
        provider_public_key: vec![1; 32],
        sync: SyncSettings {
            transport: Transport::Https,
            https_url: url,
            mqtt_url: None,
            heartbeat_interval_s: 60,
        },
        enrolled_at: chrono::Utc::now(),
    }
    .save(&dir.path().join("state"))
    .unwrap();
    let run = |config: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || doctor(&config, "unix:path=/nonexistent"))
    };

    let (code, report) = run(config.clone()).await.unwrap();
    assert_eq!(code, 1);
    let provider = check(&report, "provider");
    assert_eq!(provider["verdict"], "fail", "{report}");
    assert!(
        provider["fix"].as_str().unwrap().contains("sync.ca_file"),
        "{provider}"
    );

    // Trusting the provider's CA fixes it.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}[sync]\nca_file = {:?}\n", ca.pem_file),
    )
    .unwrap();
    let (_, report) = run(config).await.unwrap();
    assert_eq!(check(&report, "provider")["verdict"], "ok", "{report}");
    stop.cancel();
}
