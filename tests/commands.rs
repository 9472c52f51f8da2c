//! Remote commands end to end: the provider signs commands issued through its ops API and
//! serves them on the gateway's poll route until the gateway reports a result; the agent's
//! guard admits them once and refuses forged, unsigned, expired, wrong-gateway and replayed
//! commands (also after a restart); a signed result is recorded once and shown by the ops API.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{Duration, Utc};
use tm_gateway::sync::commands::{
    CommandGuard, CommandRefused, Delivery, Executed, Executor, Outcome, handle,
};
use tm_protocol::{Command, CommandAction, CommandResult, GatewayId, MessageKind, SigningKey};

const TOKEN: &str = "ops-token-for-commands";

fn command(gw: &str, id: &str, expires_in: Duration, action: CommandAction) -> Command {
    let now = Utc::now();
    Command {
        v: tm_protocol::PROTOCOL_VERSION,
        command_id: id.parse().unwrap(),
        gateway_id: gw.parse().unwrap(),
        issued_at: now,
        expires_at: now + expires_in,
        action,
    }
}

fn seal(c: &Command, signer: &str, key: &SigningKey) -> Vec<u8> {
    tm_protocol::seal(MessageKind::Command, signer, &tm_protocol::encode(c), key)
}

fn outcome(r: Result<Executed, CommandRefused>) -> Result<Outcome, CommandRefused> {
    r.map(|e| e.outcome)
}

#[tokio::test]
async fn forged_unsigned_expired_foreign_and_replayed_commands_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, _) = SigningKey::generate().unwrap();
    let (attacker, _) = SigningKey::generate().unwrap();
    let gw: GatewayId = "gw-7".parse().unwrap();
    let mut guard = CommandGuard::open(provider.verifying_key(), gw.clone(), dir.path());
    let resync = Arc::new(tokio::sync::Notify::new());
    let exec = Executor {
        resync: resync.clone(),
        reread: None,
        setup: None,
        release: None,
    };
    let now = Utc::now();
    let ok = command(
        "gw-7",
        "cmd-1",
        Duration::minutes(5),
        CommandAction::ResyncNow,
    );

    let forged = seal(&ok, "provider", &attacker);
    assert!(matches!(
        outcome(handle(&mut guard, &exec, &forged, now, Delivery::Poll).await),
        Err(CommandRefused::Forged(_))
    ));
    let unsigned = seal(&ok, "gw-7", &attacker);
    assert!(matches!(
        outcome(handle(&mut guard, &exec, &unsigned, now, Delivery::Poll).await),
        Err(CommandRefused::Unsigned(_))
    ));
    let mut tampered = seal(&ok, "provider", &provider);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(outcome(handle(&mut guard, &exec, &tampered, now, Delivery::Poll).await).is_err());
    assert!(matches!(
        outcome(
            handle(
                &mut guard,
                &exec,
                b"{\"type\":\"resync-now\"}",
                now,
                Delivery::Poll
            )
            .await
        ),
        Err(CommandRefused::Unsigned(_))
    ));
    let expired = command(
        "gw-7",
        "cmd-2",
        Duration::seconds(-1),
        CommandAction::ResyncNow,
    );
    assert!(matches!(
        outcome(
            handle(
                &mut guard,
                &exec,
                &seal(&expired, "provider", &provider),
                now,
                Delivery::Poll
            )
            .await
        ),
        Err(CommandRefused::Expired(_))
    ));
    let foreign = command(
        "gw-8",
        "cmd-3",
        Duration::minutes(5),
        CommandAction::ResyncNow,
    );
    assert_eq!(
        outcome(
            handle(
                &mut guard,
                &exec,
                &seal(&foreign, "provider", &provider),
                now,
                Delivery::Poll
            )
            .await
        ),
        Err(CommandRefused::WrongGateway)
    );

    // The genuine one runs once.
    let frame = seal(&ok, "provider", &provider);
    assert!(matches!(
        outcome(handle(&mut guard, &exec, &frame, now, Delivery::Poll).await),
        Ok(Outcome::Done(_))
    ));
    assert_eq!(
        outcome(handle(&mut guard, &exec, &frame, now, Delivery::Poll).await),
        Err(CommandRefused::Replayed(ok.command_id.clone()))
    );
    // Also after a restart: the seen ids are in the state directory.
    drop(guard);
    let mut guard = CommandGuard::open(provider.verifying_key(), gw, dir.path());
    assert_eq!(
        outcome(handle(&mut guard, &exec, &frame, now, Delivery::Poll).await),
        Err(CommandRefused::Replayed(ok.command_id.clone()))
    );

    // Re-reading devices without a BLE side says so; a log level without a reloader too.
    let reread = command(
        "gw-7",
        "cmd-4",
        Duration::minutes(5),
        CommandAction::RereadDevices,
    );
    assert!(matches!(
        outcome(
            handle(
                &mut guard,
                &exec,
                &seal(&reread, "provider", &provider),
                now,
                Delivery::Poll
            )
            .await
        ),
        Ok(Outcome::NotAvailable(_))
    ));
}

#[tokio::test]
async fn commands_issued_through_the_ops_api_reach_the_gateway_poll_and_run_once() {
    tm_provider::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ops-token"), TOKEN).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let text = format!(
        "listen = \"{addr}\"\npublic_url = \"http://{addr}\"\ndatabase = \"{}\"\n[ops]\ntoken_file = \"{}\"\n",
        dir.path().join("provider.db").display(),
        dir.path().join("ops-token").display()
    );
    let file: tm_provider::config::ConfigFile = toml::from_str(&text).unwrap();
    let assembly = tm_provider::app::assemble(tm_provider::config::Config::try_from(file).unwrap())
        .await
        .unwrap();
    let provider_key = tm_provider::keys::load_or_create(&dir.path().join("provider.key")).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(tm_provider::http::serve(
        listener,
        assembly.router(),
        shutdown.clone(),
    ));
    let (gw_key, _) = SigningKey::generate().unwrap();
    let gw: GatewayId = "gw-9".parse().unwrap();
    let (g, public) = (gw.clone(), gw_key.verifying_key());
    assembly
        .state
        .store
        .sqlite()
        .expect("a SQLite store")
        .write(move |c| {
            tm_testkit::store::Session {
                patient: "p",
                prescriber: "rx",
                ..tm_testkit::store::Session::accepted("tm-9")
            }
            .insert(c)?;
            tm_provider::store::sqlite::gateways::insert(c, &g, &public, "tm-9")
        })
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let issue = |gateway: &'static str, body: &'static str| {
        http.post(format!("http://{addr}/ops/api/gateways/{gateway}/commands"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let issued = issue("gw-9", r#"{"type":"resync-now"}"#).await.unwrap();
    assert_eq!(issued.status(), 201);
    let issued: Command = issued.json().await.unwrap();
    assert_eq!(
        issue("gw-nope", r#"{"type":"resync-now"}"#)
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        issue("gw-9", r#"{"type":"reboot"}"#)
            .await
            .unwrap()
            .status(),
        400
    );

    let poll = format!("http://{addr}{}", tm_protocol::routes::http::commands(&gw));
    let answer: serde_json::Value = http.get(&poll).send().await.unwrap().json().await.unwrap();
    let frames: Vec<Vec<u8>> = answer["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            base64::engine::general_purpose::STANDARD
                .decode(f.as_str().unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(frames.len(), 1);
    let state = tempfile::tempdir().unwrap();
    let mut guard = CommandGuard::open(provider_key.verifying_key(), gw.clone(), state.path());
    let resync = Arc::new(tokio::sync::Notify::new());
    let exec = Executor {
        resync: resync.clone(),
        reread: None,
        setup: None,
        release: None,
    };
    let executed = handle(&mut guard, &exec, &frames[0], Utc::now(), Delivery::Poll)
        .await
        .unwrap();
    assert_eq!(executed.command, issued);
    assert!(matches!(executed.outcome, Outcome::Done(_)));
    tokio::time::timeout(std::time::Duration::from_secs(1), resync.notified())
        .await
        .expect("the syncer is woken");
    // Delivered again (the poll, or MQTT as well): the gateway does not run it again.
    assert_eq!(
        outcome(handle(&mut guard, &exec, &frames[0], Utc::now(), Delivery::Mqtt).await),
        Err(CommandRefused::Replayed(issued.command_id.clone()))
    );

    // The gateway reports the result; the ops API shows it and the poll stops serving it.
    let list = || async {
        let answer: serde_json::Value = http
            .get(format!("http://{addr}/ops/api/gateways/gw-9/commands"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["commands"].as_array().unwrap().clone()
    };
    let before = list().await;
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["command_id"], issued.command_id.as_str());
    assert_eq!(before[0]["state"], "pending");
    assert_eq!(before[0]["action"]["type"], "resync-now");
    let result = |detail: &str| CommandResult {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id: gw.clone(),
        command_id: issued.command_id.clone(),
        status: tm_protocol::CommandStatus::Done,
        detail: detail.into(),
        finished_at: Utc::now(),
    };
    let post = |frame: Vec<u8>| {
        http.post(format!(
            "http://{addr}{}",
            tm_protocol::routes::http::COMMAND_RESULTS
        ))
        .body(frame)
        .send()
    };
    let seal_result = |r: &CommandResult, key: &SigningKey| {
        tm_protocol::seal(
            MessageKind::CommandResult,
            "gw-9",
            &tm_protocol::encode(r),
            key,
        )
    };
    let (stranger, _) = SigningKey::generate().unwrap();
    let forged = post(seal_result(&result("forged"), &stranger))
        .await
        .unwrap();
    assert_eq!(forged.status(), 401, "a result not signed by the gateway");
    assert_eq!(list().await[0]["state"], "pending");
    let sent = post(seal_result(&result("sync woken"), &gw_key))
        .await
        .unwrap();
    assert_eq!(sent.status(), 204);
    let again = post(seal_result(&result("sent twice"), &gw_key))
        .await
        .unwrap();
    assert_eq!(again.status(), 204);
    let after = list().await;
    assert_eq!(after[0]["state"], "done");
    assert_eq!(after[0]["detail"], "sync woken", "the first report is kept");
    assert!(after[0]["reported_at"].is_string());
    // The gateway's page on the dashboard shows it too.
    let page = http
        .get(format!("http://{addr}/ops/gateways/gw-9"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = page
        .split("<tr")
        .find(|r| r.contains(issued.command_id.as_str()))
        .unwrap_or_else(|| panic!("no command row: {page}"));
    assert!(row.contains("resync-now") && row.contains("done") && row.contains("sync woken"));
    let answer: serde_json::Value = http.get(&poll).send().await.unwrap().json().await.unwrap();
    assert!(
        answer["frames"].as_array().unwrap().is_empty(),
        "a command with a result is no longer served: {answer}"
    );
    shutdown.cancel();
}
