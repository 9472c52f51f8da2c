//! The provider's HTTPS ingest facing bad input: a forged signature, an unknown gateway, a
//! replayed batch, an oversized body, a malformed frame and readings from before the gateway's
//! enrollment. Each gets a clear answer; nothing is stored twice; nothing crashes.

mod common;

use common::*;
use tm_protocol::routes::http as routes;
use tm_protocol::{BatchId, GatewayId, MessageKind, Receipt, SigningKey};

struct Env {
    _dir: tempfile::TempDir,
    provider: ProviderSide,
    gw: GatewaySide,
    url: String,
    client: reqwest::Client,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewaySide::new(dir.path(), "");
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    let (addr, _stop) = provider.serve_http("127.0.0.1:0".parse().unwrap()).await;
    std::mem::forget(_stop);
    Env {
        _dir: dir,
        provider,
        gw,
        url: format!("http://{addr}{}", routes::READINGS),
        client: {
            tm_gateway::sync::install_ring_provider();
            reqwest::Client::new()
        },
    }
}

fn batch(gateway: &GatewayId, key: &SigningKey, seqs: std::ops::Range<u32>, id: &str) -> Vec<u8> {
    let leased = tm_gateway::store::LeasedBatch {
        batch_id: BatchId::new(id).unwrap(),
        readings: seqs
            .map(|s| {
                let mut r =
                    tm_gateway::simulate::reading(tm_gateway::simulate::SIMULATED_DEVICE, s);
                r.received_at = chrono::Utc::now();
                serde_json::to_vec(&r).unwrap()
            })
            .collect(),
    };
    tm_gateway::sync::seal_batch(gateway, key, &leased)
}

async fn post(env: &Env, body: Vec<u8>) -> (u16, Vec<u8>) {
    let r = env
        .client
        .post(&env.url)
        .header("Content-Type", routes::FRAME_CONTENT_TYPE)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn replayed_batch_changes_nothing_and_gets_the_same_answer() {
    let env = env().await;
    let frame = batch(&env.gw.id, &env.gw.key, 0..20, "b1-aa");
    let (status, body) = post(&env, frame.clone()).await;
    assert_eq!(status, 200);
    let receipt: Receipt =
        tm_gateway::sync::open_receipt(&body, &env.provider.key.verifying_key()).unwrap();
    assert_eq!(receipt.accepted.len(), 20);
    assert_eq!(env.provider.count().await, 20);
    let (status, body) = post(&env, frame).await;
    assert_eq!(status, 200);
    let again = tm_gateway::sync::open_receipt(&body, &env.provider.key.verifying_key()).unwrap();
    assert_eq!(again.accepted, receipt.accepted);
    assert_eq!(env.provider.count().await, 20);
    // A receipt signed by anyone else is refused by the gateway.
    let (other, _) = SigningKey::generate().unwrap();
    assert!(tm_gateway::sync::open_receipt(&body, &other.verifying_key()).is_err());
}

#[tokio::test]
async fn forged_unknown_oversized_and_malformed_frames_are_refused() {
    let env = env().await;
    let (forger, _) = SigningKey::generate().unwrap();
    let (status, body) = post(&env, batch(&env.gw.id, &forger, 0..5, "b1-bb")).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let stranger = GatewayId::new("gw-stranger").unwrap();
    let (status, body) = post(&env, batch(&stranger, &forger, 0..5, "b1-cc")).await;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("unknown gateway"));
    let (status, _) = post(&env, vec![b'x'; tm_protocol::limits::MAX_FRAME_BYTES + 10]).await;
    assert_eq!(status, 413);
    let (status, body) = post(&env, b"TMF1garbage".to_vec()).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // Validly signed but not a batch.
    let frame = tm_protocol::seal(
        MessageKind::ReadingBatch,
        env.gw.id.as_str(),
        b"{\"v\":1}",
        &env.gw.key,
    );
    let (status, body) = post(&env, frame).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("malformed"));
    assert_eq!(env.provider.count().await, 0);
}

#[tokio::test]
async fn readings_from_before_the_enrollment_are_rejected_one_by_one() {
    let env = env().await;
    let leased = tm_gateway::store::LeasedBatch {
        batch_id: BatchId::new("b1-dd").unwrap(),
        readings: [1u32, 2]
            .iter()
            .map(|s| {
                let mut r =
                    tm_gateway::simulate::reading(tm_gateway::simulate::SIMULATED_DEVICE, *s);
                if *s == 1 {
                    r.received_at = chrono::Utc::now() - chrono::Duration::days(30);
                } else {
                    r.received_at = chrono::Utc::now();
                }
                serde_json::to_vec(&r).unwrap()
            })
            .collect(),
    };
    let frame = tm_gateway::sync::seal_batch(&env.gw.id, &env.gw.key, &leased);
    let (status, body) = post(&env, frame).await;
    assert_eq!(status, 200);
    let receipt = tm_gateway::sync::open_receipt(&body, &env.provider.key.verifying_key()).unwrap();
    assert_eq!(receipt.accepted.len(), 1);
    assert_eq!(receipt.rejected.len(), 1);
    assert!(
        receipt.rejected[0]
            .reason
            .contains("outside the gateway's session")
    );
    assert_eq!(env.provider.count().await, 1);
}
