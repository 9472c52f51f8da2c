//! `tm-gateway enroll` (the real binary) against a real provider and the Portal/HUB emulator:
//! the nurse's code enrolls the gateway, its enrollment file is saved, and the HUB sees the
//! session accepted.

use std::time::Duration;

use serde_json::json;
use tm_sim_hub::SimConfig;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_gateway_enrolls_with_the_nurses_code() {
    let dir = tempfile::tempdir().unwrap();
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let provider = format!("http://{addr}");
    let sim = tm_sim_hub::spawn(
        sim_listener,
        SimConfig {
            client_id: "prov".into(),
            client_secret: "s3cret".into(),
            provider_url: Some(format!(
                "{provider}{}",
                tm_provider::portal::PRESCRIPTION_ROUTE
            )),
            action_url: None,
            fixed_headers: vec![],
            token_ttl: Duration::from_secs(3600),
        },
    )
    .unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret").unwrap();
    let text = format!(
        "listen = \"{addr}\"\npublic_url = \"{provider}\"\ndatabase = \"{db}\"\n\
         [[portal.prescribers]]\nid = \"rx-1\"\ndpa_signed = true\n\
         [hub]\nurl = \"{hub}\"\nclient_id = \"prov\"\nclient_secret_file = \"{secret}\"\nretry_initial_ms = 20\nretry_max_ms = 100\n",
        db = dir.path().join("p.db").display(),
        hub = sim.url(),
        secret = dir.path().join("secret").display(),
    );
    let file: tm_provider::config::ConfigFile = toml::from_str(&text).unwrap();
    let assembly = tm_provider::app::assemble(file.try_into().unwrap()).unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(assembly.outbox.unwrap().run(shutdown.clone()));
    let router = tm_provider::http::routes(assembly.state.clone()).into_router();
    tokio::spawn(tm_provider::http::serve(listener, router, shutdown.clone()));

    let http = reqwest::Client::new();
    let answer: serde_json::Value = http
        .post(format!("{}/control/prescribe", sim.url()))
        .json(&json!({"telemonitoringId": "tm-g", "patientId": "pat-g", "prescriberId": "rx-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = answer["body"]["url"].as_str().unwrap().to_owned();
    let html = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("carepath=https%3A%2F%2Fhl7belgium.org%2Ffhir%2Fpatient-monitoring%2Fcarepath%2Fheart-failure")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = html.find("id=\"code\">").unwrap() + 10;
    let code = html[start..start + 8].to_owned();

    let state_dir = dir.path().join("gw");
    std::fs::create_dir_all(&state_dir).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\nlog_level = \"info\"\n[ble]\nadapter = \"hci0\"\n",
            state_dir.display()
        ),
    )
    .unwrap();
    let run = |code: String| {
        let config = config.clone();
        let provider = provider.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_tm-gateway"))
                .args([
                    "--config",
                    config.to_str().unwrap(),
                    "enroll",
                    "--provider",
                    &provider,
                    "--code",
                    &code,
                ])
                .output()
                .unwrap()
        })
    };
    let out = run(code.clone()).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let enrollment = tm_gateway::enrollment::Enrollment::load(&state_dir).unwrap();
    assert_eq!(
        enrollment.provider_public_key,
        assembly
            .state
            .portal
            .provider_key
            .verifying_key()
            .as_bytes()
            .to_vec()
    );
    // The code is single use: a second run is refused as bad input.
    let again = run(code).await.unwrap();
    assert_eq!(again.status.code(), Some(2));

    for _ in 0..500 {
        if sim.hub.with(|h| h.sessions["tm-g"].status == "accepted") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        sim.hub.with(|h| h.sessions["tm-g"].status.clone()),
        "accepted"
    );
    assert!(sim.hub.with(|h| h.violations.is_empty()));
    shutdown.cancel();
    sim.shutdown.cancel();
}
