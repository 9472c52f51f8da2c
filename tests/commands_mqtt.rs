//! Remote commands over MQTT with a real mosquitto: the provider pushes each command issued
//! through its ops API on the gateway's command topic; the agent (syncing over MQTT) executes it
//! through the same guard as the HTTPS poll and reports the result over MQTT. A replayed frame
//! and a forged one published on the topic are refused and logged; a command delivered both
//! by the broker (kept for the agent's persistent session while it was down) and by the poll
//! runs once.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use tm_protocol::routes::mqtt as topics;
use tm_protocol::{Command, CommandAction, GatewayId, MessageKind, SigningKey};

const CONFIG: &str = "[sync]\nreceipt_timeout_ms = 1500\nbackoff_initial_ms = 50\n\
                      backoff_max_ms = 400\n";

/// The provider has the gateway's retained `online` status: the agent is connected, and
/// subscribed to its command topic (it subscribes before it publishes the status).
async fn online(provider: &ProviderSide, gw: &GatewayId) -> bool {
    let id = gw.to_string();
    provider
        .store
        .sqlite()
        .expect("a SQLite store")
        .read(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM ops_gateway_health WHERE gateway_id = ?1 \
                 AND mqtt_status = 'online'",
                [id],
                |r| r.get::<_, i64>(0),
            )
        })
        .await
        .unwrap()
        == 1
}

async fn wait_log(log: &std::path::Path, needles: &[&str], count: usize) {
    let found = eventually(Duration::from_secs(15), || async {
        log_lines(log, needles).len() >= count
    })
    .await;
    assert!(
        found,
        "no {count} log line(s) with {needles:?}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_an_mqtt_agent_run_once_and_report_their_results() {
    let dir = tempfile::tempdir().unwrap();
    let broker = mosquitto(dir.path());
    let gw = GatewaySide::new(dir.path(), CONFIG);
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    let (addr, _http) = provider.serve_http("127.0.0.1:0".parse().unwrap()).await;
    let ingest = provider.serve_mqtt(broker.port());
    // Readings over MQTT; the command poll (every heartbeat interval: a minute) over HTTP.
    gw.enroll_with(
        &provider.key,
        &format!("http://{addr}"),
        Some(&broker.url()),
    );
    let ops = OpsApi::new(addr);
    let topic = TopicClient::start("test-commands", broker.port(), topics::commands(&gw.id)).await;

    let log = dir.path().join("agent-1.log");
    let mut agent = gw.spawn_agent_logged(&[], "warn", &log);
    assert!(
        eventually(Duration::from_secs(20), || online(&provider, &gw.id)).await,
        "the agent never came online"
    );
    // Its first poll, at start, has long returned.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A command issued through the ops API reaches the agent over MQTT at once and takes
    // effect: its log filter goes from `warn` to `info`, so the (INFO) line of the execution
    // itself is written.
    let level = ops
        .issue(&gw.id, r#"{"type":"set-log-level","level":"info"}"#)
        .await;
    let result = ops.result(&gw.id, &level, Duration::from_secs(15)).await;
    assert_eq!(result["state"], "done", "{result}");
    assert!(
        result["detail"].as_str().unwrap().contains("info"),
        "{result}"
    );
    wait_log(&log, &["command executed", &level], 1).await;
    let executed = log_lines(&log, &["command executed", &level]);
    assert!(
        executed[0].contains("mqtt"),
        "pushed, not polled: {executed:?}"
    );
    // The provider published it once on the gateway's command topic.
    let frames = topic.seen();
    assert_eq!(frames.len(), 1);
    let genuine = frames[0].clone();
    // Not retained: a client subscribing now gets nothing.
    let late = TopicClient::start("test-late", broker.port(), topics::commands(&gw.id)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(late.seen().is_empty(), "commands are not retained");
    drop(late);

    // Replayed on the topic: refused and logged, not executed again.
    topic.publish_here(genuine.clone()).await;
    wait_log(&log, &["command refused", &level, "already executed"], 1).await;
    // Forged: signed with another key than the provider's, published on the topic.
    let (attacker, _) = SigningKey::generate().unwrap();
    let forged = Command {
        v: tm_protocol::PROTOCOL_VERSION,
        command_id: "cmd-forged".parse().unwrap(),
        gateway_id: gw.id.clone(),
        issued_at: Utc::now(),
        expires_at: Utc::now() + chrono::Duration::minutes(5),
        action: CommandAction::SetLogLevel {
            level: "trace".into(),
        },
    };
    let forged = tm_protocol::seal(
        MessageKind::Command,
        "provider",
        &tm_protocol::encode(&forged),
        &attacker,
    );
    topic.publish_here(forged).await;
    wait_log(&log, &["command refused", "forged command"], 1).await;
    // Unsigned bytes on the topic too.
    topic
        .publish_here(br#"{"type":"resync-now"}"#.to_vec())
        .await;
    wait_log(&log, &["command refused", "unsigned or malformed"], 1).await;
    assert_eq!(log_lines(&log, &["command executed"]).len(), 1);
    assert!(
        log_lines(&log, &["TRACE"]).is_empty(),
        "the forged level never applied"
    );
    assert_eq!(ops.commands(&gw.id).await.len(), 1, "nothing else reported");
    assert_eq!(
        ops.polled(&gw.id).await,
        0,
        "a command with a result is not served"
    );
    assert!(agent.terminate().success());

    // Issued while the agent is down: the broker keeps it for the agent's persistent session,
    // and the poll serves it. The provider's MQTT side is down too, so no result can reach it
    // before the poll: both deliveries arrive, and the command runs once.
    let published = topic.seen().len();
    let resync = ops.issue(&gw.id, r#"{"type":"resync-now"}"#).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            topic.seen().len() > published
        })
        .await,
        "the provider pushed the command"
    );
    ingest.cancel();
    assert_eq!(ops.polled(&gw.id).await, 1);
    let log = dir.path().join("agent-2.log");
    let mut agent = gw.spawn_agent_logged(&[], "info", &log);
    wait_log(&log, &["command executed", &resync], 1).await;
    wait_log(&log, &["command refused", &resync, "already executed"], 1).await;
    let executed = log_lines(&log, &["command executed", &resync]);
    let refused = log_lines(&log, &["command refused", &resync]);
    let paths: Vec<bool> = [&executed[0], &refused[0]]
        .iter()
        .map(|l| l.contains("mqtt"))
        .collect();
    assert!(
        paths.contains(&true) && paths.contains(&false),
        "one copy by MQTT, one by the poll: {executed:?} {refused:?}"
    );
    assert_eq!(executed.len(), 1);
    assert_eq!(
        log_lines(&log, &["re-sync requested by the provider"]).len(),
        1
    );

    // With the provider's MQTT side back, the agent's next result arrives over MQTT as usual.
    let _ingest = provider.serve_mqtt(broker.port());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = ops.issue(&gw.id, r#"{"type":"resync-now"}"#).await;
    let result = ops.result(&gw.id, &again, Duration::from_secs(15)).await;
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["detail"], "sync woken");
    assert_eq!(log_lines(&log, &["command executed"]).len(), 2);
    assert!(agent.terminate().success());
}
