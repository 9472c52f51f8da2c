//! Remote commands' statements on PostgreSQL (`ops_commands`).
//!
//! Each unit of work is one statement, so instances sharing the database need no lock of
//! their own:
//! - issuing stores the command only while its gateway is active, in the insert itself
//!   (`INSERT ... SELECT ... WHERE EXISTS`);
//! - the first report of a result wins: the update only touches a command without a result,
//!   and the same statement says whether the command exists at all, so a report sent twice
//!   (or to two instances at once) is stored once and the other is told it was already
//!   reported.
//!
//! Times the operator reads back as text (issued, finished, reported) are `timestamptz`, given
//! back in RFC 3339 as the SQLite side writes them (`+00:00`, to the microsecond); the expiry
//! is milliseconds since 1970 on both. Commands are ordered by issue time, then by id
//! byte-wise (`COLLATE "C"`, as SQLite does).

use crate::store::time_text;
use chrono::{DateTime, Utc};
use tm_protocol::{Command, CommandResult, CommandStatus};

use super::PgStore;
use crate::store::StoreError;
use crate::store::commands::{CommandView, Recorded};

const INSERT: &str = "INSERT INTO ops_commands (command_id, gateway_id, action, issued_by, \
    issued_at, expires_at_ms, frame) \
    SELECT $1::text, $2::text, $3::text, $4::text, $5::timestamptz, $6::bigint, $7::bytea \
    WHERE EXISTS (SELECT 1 FROM gateways WHERE gateway_id = $2 AND state = 'active')";
const INSERT_ROW: &str = "INSERT INTO ops_commands (command_id, gateway_id, action, issued_by, \
    issued_at, expires_at_ms, frame) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const PENDING: &str = "SELECT frame FROM ops_commands WHERE gateway_id = $1 \
    AND expires_at_ms > $2 AND result_status IS NULL ORDER BY issued_at LIMIT 32";
/// The first report wins; says whether it was stored and whether the command exists.
const RECORD_RESULT: &str = "WITH stored AS ( \
        UPDATE ops_commands SET result_status = $1, result_detail = $2, finished_at = $3, \
        reported_at = $4 WHERE command_id = $5 AND gateway_id = $6 \
        AND result_status IS NULL RETURNING 1) \
    SELECT EXISTS (SELECT 1 FROM stored), \
    EXISTS (SELECT 1 FROM ops_commands WHERE command_id = $5 AND gateway_id = $6)";
const LIST: &str = "SELECT command_id, action, issued_by, issued_at, expires_at_ms, \
    result_status, result_detail, finished_at, reported_at FROM ops_commands \
    WHERE gateway_id = $1 ORDER BY issued_at DESC, command_id COLLATE \"C\" LIMIT $2";

/// Stores `command` and its sealed `frame` whatever its gateway's state, on the caller's
/// transaction (the release of a gateway, which locks the gateway row first).
pub async fn insert_row(
    c: &impl tokio_postgres::GenericClient,
    command: &Command,
    frame: &[u8],
    issued_by: &str,
) -> Result<(), tokio_postgres::Error> {
    let action = crate::store::commands::stored_action(&command.action);
    c.execute(
        INSERT_ROW,
        &[
            &command.command_id.as_str(),
            &command.gateway_id.as_str(),
            &action,
            &issued_by,
            &command.issued_at,
            &command.expires_at.timestamp_millis(),
            &frame,
        ],
    )
    .await?;
    Ok(())
}

/// Stores `command` and its sealed `frame` when its gateway is active; false, storing nothing,
/// when it is not.
pub async fn insert(
    pg: &PgStore,
    command: &Command,
    frame: &[u8],
    issued_by: &str,
) -> Result<bool, StoreError> {
    let action = crate::store::commands::stored_action(&command.action);
    let client = pg.client().await?;
    let n = client
        .execute(
            INSERT,
            &[
                &command.command_id.as_str(),
                &command.gateway_id.as_str(),
                &action,
                &issued_by,
                &command.issued_at,
                &command.expires_at.timestamp_millis(),
                &frame,
            ],
        )
        .await
        .map_err(pg.sql())?;
    Ok(n == 1)
}

/// The unexpired command frames for `gateway` that have no result yet, oldest first (at most
/// 32).
pub async fn pending(
    pg: &PgStore,
    gateway: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let client = pg.client().await?;
    let statement = client.prepare_cached(PENDING).await.map_err(pg.sql())?;
    let rows = client
        .query(&statement, &[&gateway, &now.timestamp_millis()])
        .await
        .map_err(pg.sql())?;
    rows.iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(pg.sql())
}

fn status_text(s: CommandStatus) -> &'static str {
    match s {
        CommandStatus::Done => "done",
        CommandStatus::NotAvailable => "not-available",
        CommandStatus::Failed => "failed",
    }
}

/// Stores a verified result received at `now`. The first report wins.
pub async fn record_result(
    pg: &PgStore,
    result: &CommandResult,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    let client = pg.client().await?;
    let row = client
        .query_one(
            RECORD_RESULT,
            &[
                &status_text(result.status),
                &result.detail,
                &result.finished_at,
                &now,
                &result.command_id.as_str(),
                &result.gateway_id.as_str(),
            ],
        )
        .await
        .map_err(pg.sql())?;
    let stored: bool = row.try_get(0).map_err(pg.sql())?;
    let known: bool = row.try_get(1).map_err(pg.sql())?;
    Ok(if stored {
        Recorded::Stored
    } else if known {
        Recorded::AlreadyReported
    } else {
        Recorded::UnknownCommand
    })
}

/// The latest `limit` commands of `gateway`, newest first, each with its state at `now`.
pub async fn list(
    c: &impl tokio_postgres::GenericClient,
    gateway: &str,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<CommandView>, tokio_postgres::Error> {
    let rows = c.query(LIST, &[&gateway, &i64::from(limit)]).await?;
    rows.iter().map(|r| command_view(r, now)).collect()
}

fn command_view(
    r: &tokio_postgres::Row,
    now: DateTime<Utc>,
) -> Result<CommandView, tokio_postgres::Error> {
    let text = |t: Option<DateTime<Utc>>| t.map(time_text);
    let expires_ms: i64 = r.try_get(4)?;
    let status: Option<String> = r.try_get(5)?;
    let state = status.unwrap_or_else(|| {
        if expires_ms > now.timestamp_millis() {
            "pending".into()
        } else {
            "expired".into()
        }
    });
    let action: String = r.try_get(1)?;
    Ok(CommandView {
        command_id: r.try_get(0)?,
        action: serde_json::from_str(&action).unwrap_or(serde_json::Value::Null),
        issued_by: r.try_get(2)?,
        issued_at: time_text(r.try_get::<_, DateTime<Utc>>(3)?),
        expires_at: DateTime::from_timestamp_millis(expires_ms),
        state,
        detail: r.try_get(6)?,
        finished_at: text(r.try_get(7)?),
        reported_at: text(r.try_get(8)?),
    })
}

/// The latest commands of `gateway` on a pooled connection ([`list`]).
pub async fn gateway_commands(
    pg: &PgStore,
    gateway: &str,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<CommandView>, StoreError> {
    let client = pg.client().await?;
    list(&**client, gateway, now, limit).await.map_err(pg.sql())
}
