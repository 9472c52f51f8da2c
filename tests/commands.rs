//! Remote commands end to end: the provider signs commands issued through its ops API and
//! serves them on the gateway's poll route; the agent's guard admits them once and refuses
//! forged, unsigned, expired, wrong-gateway and replayed commands (also after a restart).

use std::sync::Arc;

use base64::Engine as _;
use chrono::{Duration, Utc};
use tm_gateway::sync::commands::{CommandGuard, CommandRefused, Executor, Outcome, handle};
use tm_protocol::{Command, CommandAction, GatewayId, MessageKind, SigningKey};

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

#[test]
fn forged_unsigned_expired_foreign_and_replayed_commands_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, _) = SigningKey::generate().unwrap();
    let (attacker, _) = SigningKey::generate().unwrap();
    let gw: GatewayId = "gw-7".parse().unwrap();
    let mut guard = CommandGuard::open(provider.verifying_key(), gw.clone(), dir.path());
    let resync = Arc::new(tokio::sync::Notify::new());
    let exec = Executor {
        resync: resync.clone(),
        reread: None,
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
        handle(&mut guard, &exec, &forged, now),
        Err(CommandRefused::Forged(_))
    ));
    let unsigned = seal(&ok, "gw-7", &attacker);
    assert!(matches!(
        handle(&mut guard, &exec, &unsigned, now),
        Err(CommandRefused::Unsigned(_))
    ));
    let mut tampered = seal(&ok, "provider", &provider);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(handle(&mut guard, &exec, &tampered, now).is_err());
    assert!(matches!(
        handle(&mut guard, &exec, b"{\"type\":\"resync-now\"}", now),
        Err(CommandRefused::Unsigned(_))
    ));
    let expired = command(
        "gw-7",
        "cmd-2",
        Duration::seconds(-1),
        CommandAction::ResyncNow,
    );
    assert!(matches!(
        handle(
            &mut guard,
            &exec,
            &seal(&expired, "provider", &provider),
            now
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
        handle(
            &mut guard,
            &exec,
            &seal(&foreign, "provider", &provider),
            now
        ),
        Err(CommandRefused::WrongGateway)
    );

    // The genuine one runs once.
    let frame = seal(&ok, "provider", &provider);
    assert!(matches!(
        handle(&mut guard, &exec, &frame, now),
        Ok(Outcome::Done(_))
    ));
    assert_eq!(
        handle(&mut guard, &exec, &frame, now),
        Err(CommandRefused::Replayed)
    );
    // Also after a restart: the seen ids are in the state directory.
    drop(guard);
    let mut guard = CommandGuard::open(provider.verifying_key(), gw, dir.path());
    assert_eq!(
        handle(&mut guard, &exec, &frame, now),
        Err(CommandRefused::Replayed)
    );

    // Re-reading devices without a BLE side says so; a log level without a reloader too.
    let reread = command(
        "gw-7",
        "cmd-4",
        Duration::minutes(5),
        CommandAction::RereadDevices,
    );
    assert!(matches!(
        handle(
            &mut guard,
            &exec,
            &seal(&reread, "provider", &provider),
            now
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
    let assembly =
        tm_provider::app::assemble(tm_provider::config::Config::try_from(file).unwrap()).unwrap();
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
        .db
        .write(move |c| {
            c.execute(
                "INSERT INTO sessions VALUES ('tm-9','p','rx','accepted',NULL,NULL,'t','t')",
                [],
            )?;
            tm_provider::gateways::insert(c, &g, &public, "tm-9")
        })
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let issue = |gateway: &'static str, body: &'static str| {
        http.post(format!("http://{addr}/ops/api/gateways/{gateway}/commands"))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
    };
    assert_eq!(
        issue("gw-9", r#"{"type":"resync-now"}"#)
            .await
            .unwrap()
            .status(),
        201
    );
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
    let mut guard = CommandGuard::open(provider_key.verifying_key(), gw, state.path());
    let resync = Arc::new(tokio::sync::Notify::new());
    let exec = Executor {
        resync: resync.clone(),
        reread: None,
    };
    assert!(matches!(
        handle(&mut guard, &exec, &frames[0], Utc::now()),
        Ok(Outcome::Done(_))
    ));
    tokio::time::timeout(std::time::Duration::from_secs(1), resync.notified())
        .await
        .expect("the syncer is woken");
    // The poll still serves it until it expires; the gateway does not run it again.
    assert_eq!(
        handle(&mut guard, &exec, &frames[0], Utc::now()),
        Err(CommandRefused::Replayed)
    );
    shutdown.cancel();
}
