//! The setup page's reads and records on SQLite (see [`crate::store::setup`]).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _, params};
use tm_protocol::{GatewayId, Heartbeat, Reading};

use super::parse_time;
use crate::store::setup::{ACTOR, DeviceReading, SetupStep, SetupView, latest_setup_until};
use crate::store::time_text;

const GATEWAY: &str = "SELECT gateway_id, enrolled_at, setup_done_at FROM gateways \
    WHERE telemonitoring_id = ?1 AND state = 'active' ORDER BY enrolled_at DESC LIMIT 1";
const HEARTBEAT: &str = "SELECT received_at, payload FROM gateway_heartbeats WHERE gateway_id = ?1";
const ACTIONS: &str = "SELECT action FROM ops_commands WHERE gateway_id = ?1 \
    AND expires_at_ms > ?2 ORDER BY issued_at DESC LIMIT 32";
const RECORDED: &str = "SELECT r.payload FROM setup_first_readings f JOIN readings r \
    ON r.telemonitoring_id = f.telemonitoring_id AND r.reading_id = f.reading_id \
    WHERE f.telemonitoring_id = ?1 AND f.gateway_id = ?2 AND f.address = ?3 LIMIT 1";
/// The newest committed reading of a device of the gateway in the session.
const NEWEST: &str = "SELECT payload FROM readings WHERE telemonitoring_id = ?1 \
    AND gateway_id = ?2 AND json_extract(payload, '$.device.address') = ?3 \
    ORDER BY rowid DESC LIMIT 1";
const RECORD: &str = "INSERT INTO setup_first_readings (telemonitoring_id, gateway_id, address, \
    reading_id, shown_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";
const FINISH: &str = "UPDATE gateways SET setup_done_at = ?3 WHERE gateway_id = ?1 \
    AND telemonitoring_id = ?2 AND state = 'active' AND setup_done_at IS NULL";

fn utc(text: &str, column: usize) -> rusqlite::Result<DateTime<Utc>> {
    parse_time(text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("not an RFC 3339 time: {text:?}").into(),
        )
    })
}

/// The setup view of a session.
pub fn view(
    conn: &Connection,
    telemonitoring_id: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<Option<SetupView>> {
    let row: Option<(String, String, Option<String>)> = conn
        .query_row(GATEWAY, params![telemonitoring_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((id, enrolled, done)) = row else {
        return Ok(None);
    };
    let Ok(gateway_id) = GatewayId::new(id) else {
        return Ok(None);
    };
    let claimed_at = utc(&enrolled, 1)?;
    let heartbeat = conn
        .query_row(HEARTBEAT, params![gateway_id.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?
        .and_then(|(at, payload)| {
            let at = parse_time(&at)?;
            let hb: Heartbeat = serde_json::from_str(&payload).ok()?;
            (at >= claimed_at).then_some((at, hb))
        });
    let mut stmt = conn.prepare(ACTIONS)?;
    let actions: Vec<String> = stmt
        .query_map(params![gateway_id.as_str(), now.timestamp_millis()], |r| {
            r.get(0)
        })?
        .collect::<rusqlite::Result<_>>()?;
    let commanded_until = latest_setup_until(actions.iter().map(String::as_str));
    let mut readings = Vec::new();
    // Once the setup is finished only the recorded first readings are shown: the page no
    // longer waits for one, and a long session's readings are not searched on every poll.
    let finished = done.is_some();
    let devices = heartbeat.as_ref().map(|(_, h)| h.devices.as_slice());
    for d in devices.unwrap_or_default() {
        let key = params![telemonitoring_id, gateway_id.as_str(), d.address];
        let recorded: Option<String> = conn.query_row(RECORDED, key, |r| r.get(0)).optional()?;
        let (payload, was_recorded) = match recorded {
            Some(p) => (Some(p), true),
            None if finished => (None, false),
            None => (conn.query_row(NEWEST, key, |r| r.get(0)).optional()?, false),
        };
        if let Some(reading) = payload.and_then(|p| serde_json::from_str::<Reading>(&p).ok()) {
            readings.push(DeviceReading {
                address: d.address.clone(),
                reading,
                recorded: was_recorded,
            });
        }
    }
    Ok(Some(SetupView {
        gateway_id,
        claimed_at,
        setup_done_at: done.as_deref().map(|d| utc(d, 2)).transpose()?,
        heartbeat,
        commanded_until,
        readings,
    }))
}

/// Appends the audit entry of `step`.
pub fn audit(conn: &Connection, step: &SetupStep, now: DateTime<Utc>) -> rusqlite::Result<()> {
    super::audit::record(
        conn,
        now,
        ACTOR,
        step.action,
        step.gateway_id.as_str(),
        Some(&step.telemonitoring_id),
        step.device.as_deref(),
        &step.detail,
    )
}

/// Records a device's first reading shown, auditing it once.
pub fn first_reading(
    conn: &mut Connection,
    step: &SetupStep,
    reading_id: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    let n = tx.execute(
        RECORD,
        params![
            step.telemonitoring_id,
            step.gateway_id.as_str(),
            step.device.as_deref().unwrap_or_default(),
            reading_id,
            time_text(now)
        ],
    )?;
    if n == 1 {
        audit(&tx, step, now)?;
    }
    tx.commit()?;
    Ok(n == 1)
}

/// Marks the setup finished and audits it once.
pub fn finish(
    conn: &mut Connection,
    step: &SetupStep,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    let n = tx.execute(
        FINISH,
        params![
            step.gateway_id.as_str(),
            step.telemonitoring_id,
            time_text(now)
        ],
    )?;
    if n == 1 {
        audit(&tx, step, now)?;
    }
    tx.commit()?;
    Ok(n == 1)
}
