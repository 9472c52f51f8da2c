//! Remote commands' statements on SQLite (`ops_commands`).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use tm_protocol::{Command, CommandResult, CommandStatus};

use crate::store::commands::{CommandView, Recorded};
use crate::store::time_text;

/// Stores `command` and its sealed `frame` when its gateway is active; false, storing nothing,
/// when it is not.
pub fn insert(
    conn: &Connection,
    command: &Command,
    frame: &[u8],
    issued_by: &str,
) -> rusqlite::Result<bool> {
    let active: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM gateways WHERE gateway_id = ?1 AND state = 'active')",
        params![command.gateway_id.as_str()],
        |r| r.get(0),
    )?;
    if !active {
        return Ok(false);
    }
    insert_row(conn, command, frame, issued_by)?;
    Ok(true)
}

/// Stores `command` and its sealed `frame` whatever its gateway's state (the release of a
/// gateway, in the transaction that releases it).
pub fn insert_row(
    conn: &Connection,
    command: &Command,
    frame: &[u8],
    issued_by: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO ops_commands (command_id, gateway_id, action, issued_by, issued_at, \
         expires_at_ms, frame) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            command.command_id.as_str(),
            command.gateway_id.as_str(),
            crate::store::commands::stored_action(&command.action),
            issued_by,
            time_text(command.issued_at),
            command.expires_at.timestamp_millis(),
            frame
        ],
    )?;
    Ok(())
}

/// The unexpired command frames for `gateway` that have no result yet, oldest first (at most
/// 32).
pub fn pending(
    conn: &Connection,
    gateway: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<Vec<u8>>> {
    let mut stmt = conn.prepare(
        "SELECT frame FROM ops_commands WHERE gateway_id = ?1 AND expires_at_ms > ?2 \
         AND result_status IS NULL ORDER BY issued_at LIMIT 32",
    )?;
    stmt.query_map(params![gateway, now.timestamp_millis()], |r| r.get(0))?
        .collect()
}

fn status_text(s: CommandStatus) -> &'static str {
    match s {
        CommandStatus::Done => "done",
        CommandStatus::NotAvailable => "not-available",
        CommandStatus::Failed => "failed",
    }
}

/// Stores a verified result received at `now`. The first report wins.
pub fn record_result(
    conn: &Connection,
    result: &CommandResult,
    now: DateTime<Utc>,
) -> rusqlite::Result<Recorded> {
    let changed = conn.execute(
        "UPDATE ops_commands SET result_status = ?1, result_detail = ?2, finished_at = ?3, \
         reported_at = ?4 WHERE command_id = ?5 AND gateway_id = ?6 \
         AND result_status IS NULL",
        params![
            status_text(result.status),
            result.detail,
            time_text(result.finished_at),
            time_text(now),
            result.command_id.as_str(),
            result.gateway_id.as_str()
        ],
    )?;
    if changed > 0 {
        return Ok(Recorded::Stored);
    }
    let known: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM ops_commands WHERE command_id = ?1 AND gateway_id = ?2)",
        params![result.command_id.as_str(), result.gateway_id.as_str()],
        |r| r.get(0),
    )?;
    Ok(if known {
        Recorded::AlreadyReported
    } else {
        Recorded::UnknownCommand
    })
}

/// The latest `limit` commands of `gateway`, newest first.
pub fn list(
    conn: &Connection,
    gateway: &str,
    now: DateTime<Utc>,
    limit: u32,
) -> rusqlite::Result<Vec<CommandView>> {
    let mut stmt = conn.prepare(
        "SELECT command_id, action, issued_by, issued_at, expires_at_ms, result_status, \
         result_detail, finished_at, reported_at FROM ops_commands WHERE gateway_id = ?1 \
         ORDER BY issued_at DESC, command_id LIMIT ?2",
    )?;
    stmt.query_map(params![gateway, limit], |r| {
        let expires_ms: i64 = r.get(4)?;
        let status: Option<String> = r.get(5)?;
        let state = status.unwrap_or_else(|| {
            if expires_ms > now.timestamp_millis() {
                "pending".into()
            } else {
                "expired".into()
            }
        });
        let action: String = r.get(1)?;
        Ok(CommandView {
            command_id: r.get(0)?,
            action: serde_json::from_str(&action).unwrap_or(serde_json::Value::Null),
            issued_by: r.get(2)?,
            issued_at: r.get(3)?,
            expires_at: DateTime::from_timestamp_millis(expires_ms),
            state,
            detail: r.get(6)?,
            finished_at: r.get(7)?,
            reported_at: r.get(8)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use tm_protocol::{CommandAction, CommandId, GatewayId, SigningKey};

    use super::*;
    use crate::store::Store;

    fn command(gateway: &str, id: &str, now: DateTime<Utc>) -> Command {
        Command {
            v: tm_protocol::PROTOCOL_VERSION,
            command_id: CommandId::new(id).unwrap(),
            gateway_id: GatewayId::new(gateway).unwrap(),
            issued_at: now,
            expires_at: now + Duration::minutes(15),
            action: CommandAction::ResyncNow,
        }
    }

    #[tokio::test]
    async fn a_command_is_served_until_its_first_result() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).unwrap();
        let (key, _) = SigningKey::generate().unwrap();
        let public = key.verifying_key();
        store
            .sqlite()
            .expect("a SQLite store")
            .write(move |c| {
                tm_testkit::store::accepted_session(c, "tm-1")?;
                let gw = GatewayId::new("gw-1").unwrap();
                crate::store::sqlite::gateways::insert(c, &gw, &public, "tm-1")
            })
            .await
            .unwrap();
        let now = Utc::now();
        let by = || "operator:token".to_owned();
        assert!(
            !store
                .store_issued_command(command("gw-2", "cmd-a", now), vec![1], by())
                .await
                .unwrap(),
            "no such gateway"
        );
        assert!(
            store
                .store_issued_command(command("gw-1", "cmd-b", now), vec![2], by())
                .await
                .unwrap()
        );
        let pending = store.pending_command_frames("gw-1".into(), now).await;
        assert_eq!(pending.unwrap(), vec![vec![2u8]]);
        let views = store.gateway_commands("gw-1".into(), now, 10).await;
        assert_eq!(views.unwrap()[0].state, "pending");
        let later = now + Duration::hours(1);
        let views = store.gateway_commands("gw-1".into(), later, 10).await;
        assert_eq!(views.unwrap()[0].state, "expired");

        let result = |id: &str| CommandResult {
            v: tm_protocol::PROTOCOL_VERSION,
            gateway_id: GatewayId::new("gw-1").unwrap(),
            command_id: CommandId::new(id).unwrap(),
            status: CommandStatus::Done,
            detail: "resynced".into(),
            finished_at: now,
        };
        for (id, expected) in [
            ("cmd-b", Recorded::Stored),
            ("cmd-b", Recorded::AlreadyReported),
            ("cmd-c", Recorded::UnknownCommand),
        ] {
            let recorded = store.record_command_result(result(id), now).await.unwrap();
            assert_eq!(recorded, expected, "{id}");
        }
        assert!(
            store
                .pending_command_frames("gw-1".into(), now)
                .await
                .unwrap()
                .is_empty()
        );
        let views = store.gateway_commands("gw-1".into(), now, 10).await;
        assert_eq!(views.unwrap()[0].state, "done");
    }
}
