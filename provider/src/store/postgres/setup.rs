//! The setup page's reads and records on PostgreSQL (see [`crate::store::setup`]). Recording
//! a first reading is one `INSERT ... ON CONFLICT DO NOTHING` whose row count decides the
//! audit entry, and finishing is one conditional `UPDATE`: two instances serving the page at
//! once record and audit each thing once.

use chrono::{DateTime, Utc};
use tm_protocol::{GatewayId, Heartbeat, Reading};
use tokio_postgres::GenericClient;

use super::{PgStore, audit as audit_log};
use crate::store::StoreError;
use crate::store::setup::{ACTOR, DeviceReading, SetupStep, SetupView, latest_setup_until};

const GATEWAY: &str = "SELECT gateway_id, enrolled_at, setup_done_at FROM gateways \
    WHERE telemonitoring_id = $1 AND state = 'active' ORDER BY enrolled_at DESC LIMIT 1";
const HEARTBEAT: &str = "SELECT received_at, payload FROM gateway_heartbeats WHERE gateway_id = $1";
const ACTIONS: &str = "SELECT action FROM ops_commands WHERE gateway_id = $1 \
    AND expires_at_ms > $2 ORDER BY issued_at DESC LIMIT 32";
const RECORDED: &str = "SELECT r.payload FROM setup_first_readings f JOIN readings r \
    ON r.telemonitoring_id = f.telemonitoring_id AND r.reading_id = f.reading_id \
    WHERE f.telemonitoring_id = $1 AND f.gateway_id = $2 AND f.address = $3 LIMIT 1";
/// The newest committed reading of a device of the gateway in the session.
const NEWEST: &str = "SELECT payload FROM readings WHERE telemonitoring_id = $1 \
    AND gateway_id = $2 AND (payload::jsonb -> 'device' ->> 'address') = $3 \
    ORDER BY seq DESC LIMIT 1";
const RECORD: &str = "INSERT INTO setup_first_readings (telemonitoring_id, gateway_id, address, \
    reading_id, shown_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
const FINISH: &str = "UPDATE gateways SET setup_done_at = $3 WHERE gateway_id = $1 \
    AND telemonitoring_id = $2 AND state = 'active' AND setup_done_at IS NULL";

/// The setup view of a session.
pub async fn view(
    pg: &PgStore,
    telemonitoring_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<SetupView>, StoreError> {
    let c = pg.client().await?;
    view_on(&**c, telemonitoring_id, now)
        .await
        .map_err(pg.sql())
}

async fn view_on(
    c: &impl GenericClient,
    telemonitoring_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<SetupView>, tokio_postgres::Error> {
    let Some(row) = c.query_opt(GATEWAY, &[&telemonitoring_id]).await? else {
        return Ok(None);
    };
    let Ok(gateway_id) = GatewayId::new(row.try_get::<_, String>(0)?) else {
        return Ok(None);
    };
    let claimed_at: DateTime<Utc> = row.try_get(1)?;
    let setup_done_at: Option<DateTime<Utc>> = row.try_get(2)?;
    let heartbeat = match c.query_opt(HEARTBEAT, &[&gateway_id.as_str()]).await? {
        Some(r) => {
            let at: DateTime<Utc> = r.try_get(0)?;
            let payload: String = r.try_get(1)?;
            serde_json::from_str::<Heartbeat>(&payload)
                .ok()
                .filter(|_| at >= claimed_at)
                .map(|hb| (at, hb))
        }
        None => None,
    };
    let actions: Vec<String> = c
        .query(ACTIONS, &[&gateway_id.as_str(), &now.timestamp_millis()])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let commanded_until = latest_setup_until(actions.iter().map(String::as_str));
    let mut readings = Vec::new();
    // Once the setup is finished only the recorded first readings are shown: the page no
    // longer waits for one, and a long session's readings are not searched on every poll.
    let finished = setup_done_at.is_some();
    let devices = heartbeat.as_ref().map(|(_, h)| h.devices.as_slice());
    for d in devices.unwrap_or_default() {
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&telemonitoring_id, &gateway_id.as_str(), &d.address];
        let (payload, recorded) = match c.query_opt(RECORDED, &key).await? {
            Some(r) => (Some(r.try_get::<_, String>(0)?), true),
            None if finished => (None, false),
            None => (
                c.query_opt(NEWEST, &key)
                    .await?
                    .map(|r| r.try_get::<_, String>(0))
                    .transpose()?,
                false,
            ),
        };
        if let Some(reading) = payload.and_then(|p| serde_json::from_str::<Reading>(&p).ok()) {
            readings.push(DeviceReading {
                address: d.address.clone(),
                reading,
                recorded,
            });
        }
    }
    Ok(Some(SetupView {
        gateway_id,
        claimed_at,
        setup_done_at,
        heartbeat,
        commanded_until,
        readings,
    }))
}

async fn record(
    c: &impl GenericClient,
    step: &SetupStep,
    now: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    audit_log::record(
        c,
        now,
        ACTOR,
        step.action,
        step.gateway_id.as_str(),
        Some(&step.telemonitoring_id),
        step.device.as_deref(),
        &step.detail,
    )
    .await
}

/// Appends the audit entry of `step`.
pub async fn audit(pg: &PgStore, step: &SetupStep, now: DateTime<Utc>) -> Result<(), StoreError> {
    let c = pg.client().await?;
    record(&**c, step, now).await.map_err(pg.sql())
}

/// Records a device's first reading shown, auditing it once.
pub async fn first_reading(
    pg: &PgStore,
    step: &SetupStep,
    reading_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    let address = step.device.clone().unwrap_or_default();
    let n = tx
        .execute(
            RECORD,
            &[
                &step.telemonitoring_id,
                &step.gateway_id.as_str(),
                &address,
                &reading_id,
                &now,
            ],
        )
        .await
        .map_err(pg.sql())?;
    if n == 1 {
        record(&*tx, step, now).await.map_err(pg.sql())?;
    }
    tx.commit().await.map_err(pg.sql())?;
    Ok(n == 1)
}

/// Marks the setup finished and audits it once.
pub async fn finish(
    pg: &PgStore,
    step: &SetupStep,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    let n = tx
        .execute(
            FINISH,
            &[&step.gateway_id.as_str(), &step.telemonitoring_id, &now],
        )
        .await
        .map_err(pg.sql())?;
    if n == 1 {
        record(&*tx, step, now).await.map_err(pg.sql())?;
    }
    tx.commit().await.map_err(pg.sql())?;
    Ok(n == 1)
}
