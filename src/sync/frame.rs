//! Sealing a leased batch: the readings' stored JSON is spliced into the batch envelope without
//! re-encoding (the outbox stored exactly what `serde_json` produced), then the whole payload is
//! signed with the gateway key.

use tm_protocol::{GatewayId, MessageKind, PROTOCOL_VERSION, SigningKey};

use crate::store::LeasedBatch;

/// The signed frame carrying `batch` for `gateway`.
pub fn seal_batch(gateway: &GatewayId, key: &SigningKey, batch: &LeasedBatch) -> Vec<u8> {
    let size: usize = batch.readings.iter().map(|r| r.len() + 1).sum();
    let mut payload = Vec::with_capacity(size + 256);
    let head = serde_json::json!({
        "v": PROTOCOL_VERSION,
        "gateway_id": gateway,
        "batch_id": batch.batch_id,
        "created_at": chrono::Utc::now(),
    });
    let head = serde_json::to_vec(&head).expect("a JSON object serializes");
    // `{...}` -> `{..., "readings":[r1,r2]}`
    payload.extend_from_slice(&head[..head.len() - 1]);
    payload.extend_from_slice(b",\"readings\":[");
    for (i, r) in batch.readings.iter().enumerate() {
        if i > 0 {
            payload.push(b',');
        }
        payload.extend_from_slice(r);
    }
    payload.extend_from_slice(b"]}");
    tm_protocol::seal(MessageKind::ReadingBatch, gateway.as_str(), &payload, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tm_protocol::{BatchId, Frame, ReadingBatch};

    #[test]
    fn sealed_batch_verifies_and_decodes_strictly() {
        let (key, _) = SigningKey::generate().unwrap();
        let gw = GatewayId::new("gw-1").unwrap();
        let readings: Vec<_> = (0..3)
            .map(|i| crate::simulate::reading(crate::simulate::SIMULATED_DEVICE, i))
            .collect();
        let batch = LeasedBatch {
            batch_id: BatchId::new("b1-00").unwrap(),
            readings: readings
                .iter()
                .map(|r| serde_json::to_vec(r).unwrap())
                .collect(),
        };
        let frame = seal_batch(&gw, &key, &batch);
        let parsed = Frame::parse(&frame).unwrap();
        assert_eq!(parsed.signer(), "gw-1");
        let payload = parsed
            .verify(MessageKind::ReadingBatch, &key.verifying_key())
            .unwrap();
        let decoded: ReadingBatch = tm_protocol::decode(payload).unwrap();
        assert_eq!(decoded.readings, readings);
        assert_eq!(decoded.batch_id, batch.batch_id);
    }
}
