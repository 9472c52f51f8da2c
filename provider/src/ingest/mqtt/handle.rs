//! One MQTT message: verified and ingested, or refused. Either way the caller acknowledges it
//! to the broker exactly once afterwards, so no message is ever delivered twice for being
//! refused, and none holds up the next.
//!
//! A refusal is counted by reason ([`Refusal`], `tm_mqtt_messages_refused_total` in
//! `/metrics`) and logged with the reason, the topic's gateway (when the topic has one) and
//! the size; never the payload. Statuses (`tm/v1/gw/{id}/status`) are signed frames like the
//! rest: unsigned, forged or another gateway's statuses are refused and change nothing, and a
//! verified status of an older connection than the latest one seen (a replayed last-will) is
//! counted as `stale-status` and changes nothing either.

use rumqttc::{AsyncClient, Publish, QoS};
use tm_protocol::limits::MAX_FRAME_BYTES;
use tm_protocol::routes::mqtt as topics;

use super::stats::Refusal;
use crate::ingest::{Ingest, IngestError};

/// Handles `p` (without acknowledging it).
pub(super) async fn handle(ingest: &Ingest, client: &AsyncClient, p: &Publish) {
    let gateway = topics::parse(&p.topic).map(|(g, _)| g.to_string());
    if let Err((reason, error)) = attempt(ingest, client, p).await {
        ingest
            .mqtt_publisher()
            .stats()
            .refused(reason, chrono::Utc::now());
        tracing::warn!(
            reason = reason.as_str(),
            gateway = gateway.as_deref().unwrap_or("-"),
            bytes = p.payload.len(),
            error = error.as_deref().unwrap_or("-"),
            "MQTT message refused; acknowledged so it is not delivered again"
        );
    }
}

/// A refusal and, where it cannot carry a payload fragment, the error's text.
type Refused = (Refusal, Option<String>);

fn refused(e: &IngestError) -> Option<Refused> {
    let reason = refusal_of(e)?;
    // A decode error may quote the payload; only its reason is logged.
    let text = (reason != Refusal::Malformed).then(|| e.to_string());
    Some((reason, text))
}

async fn attempt(ingest: &Ingest, client: &AsyncClient, p: &Publish) -> Result<(), Refused> {
    let Some((gateway, leaf)) = topics::parse(&p.topic) else {
        return Err((Refusal::WrongTopic, None));
    };
    if p.payload.len() > MAX_FRAME_BYTES {
        return Err((Refusal::TooLarge, None));
    }
    let signer_matches = tm_protocol::Frame::parse(&p.payload)
        .map(|f| f.signer() == gateway.as_str())
        .unwrap_or(true);
    if !signer_matches {
        return Err((Refusal::SignerMismatch, None));
    }
    let outcome = match leaf {
        "readings" => match ingest.readings(&p.payload, None).await {
            Ok(done) => {
                if let Err(e) = client
                    .publish(
                        topics::receipts(&gateway),
                        QoS::AtLeastOnce,
                        false,
                        done.receipt_frame,
                    )
                    .await
                {
                    tracing::warn!(error = %e, "receipt not published; the gateway will resend");
                }
                Ok(())
            }
            Err(e) => Err(e),
        },
        "heartbeat" => ingest.heartbeat(&p.payload).await,
        "command-results" => ingest.command_result(&p.payload).await,
        "status" => match ingest.status(&p.payload).await {
            Ok(true) => Ok(()),
            Ok(false) => return Err((Refusal::StaleStatus, None)),
            Err(e) => Err(e),
        },
        _ => return Err((Refusal::WrongTopic, None)),
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(e) => match refused(&e) {
            Some(r) => Err(r),
            None => {
                tracing::warn!(gateway = %gateway, error = %e, "MQTT message not stored; the gateway sends it again");
                Ok(())
            }
        },
    }
}

/// The refusal an ingest error stands for; `None` for a store failure (not the message's
/// fault: the gateway sends it again).
fn refusal_of(e: &IngestError) -> Option<Refusal> {
    Some(match e {
        IngestError::Malformed(_) | IngestError::Mismatch(_) => Refusal::Malformed,
        IngestError::TooLarge(_) => Refusal::TooLarge,
        IngestError::UnknownGateway => Refusal::UnknownGateway,
        IngestError::NotActive(_) => Refusal::InactiveGateway,
        IngestError::BadSignature => Refusal::BadSignature,
        IngestError::Store(_) | IngestError::Commit(_) => return None,
    })
}
