//! Local checks: the identity key, the outbox database and the disk.

use std::path::Path;

use super::Check;
use crate::config::Config;

/// The key exists, is private and parses. Never creates it.
pub(super) fn identity(config: &Config) -> Check {
    let path = config.key_path();
    if !path.exists() {
        return Check::fail(
            "identity",
            format!("no key at {}", path.display()),
            "start the agent once (`tm-gateway identity` creates the key), then enroll",
        );
    }
    match tm_protocol::SigningKey::load(&path) {
        Ok(key) => Check::ok(
            "identity",
            format!(
                "key present, fingerprint {}",
                key.verifying_key().fingerprint()
            ),
        ),
        Err(e) => Check::fail(
            "identity",
            e.to_string(),
            "fix the key file as the message says",
        ),
    }
}

/// The outbox passes `quick_check` and is below its quota alarm.
pub(super) fn outbox(config: &Config) -> Check {
    let path = config.outbox_path();
    if !path.exists() {
        return Check::warn(
            "outbox",
            format!("no outbox yet at {}", path.display()),
            "it is created when the agent first runs (`systemctl start tm-gateway`)",
        );
    }
    let quick = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|c| {
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        c.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0))
    });
    match quick {
        Ok(s) if s == "ok" => {}
        Ok(s) => {
            return Check::fail(
                "outbox",
                format!("integrity check failed: {s}"),
                "restart the agent: it moves a corrupt outbox aside and opens a fresh one",
            );
        }
        Err(e) => {
            return Check::fail(
                "outbox",
                format!("cannot read {}: {e}", path.display()),
                "restart the agent: it moves a corrupt outbox aside and opens a fresh one",
            );
        }
    }
    match crate::store::read_status(&path, config.store.quota_bytes()) {
        Ok(s) => {
            let pct = (s.used_bytes * 100).checked_div(s.quota_bytes).unwrap_or(0);
            let detail = format!(
                "integrity ok, {} unsent, {} rejected, {pct}% of quota used",
                s.pending + s.leased,
                s.rejected
            );
            if pct >= 80 {
                Check::warn(
                    "outbox",
                    detail,
                    "the provider is not confirming readings: check the network checks below",
                )
            } else {
                Check::ok("outbox", detail)
            }
        }
        Err(e) => Check::fail("outbox", e.to_string(), "restart the agent"),
    }
}

/// Free space on the state directory's file system.
pub(super) fn disk(state_dir: &Path) -> Check {
    let probe = if state_dir.exists() {
        state_dir
    } else {
        state_dir.parent().unwrap_or(state_dir)
    };
    match rustix::fs::statvfs(probe) {
        Ok(st) => {
            // As df computes Use%: used / (used + available to unprivileged users).
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            let used = st
                .f_blocks
                .saturating_sub(st.f_bfree)
                .saturating_mul(st.f_frsize);
            let free_mb = free / (1024 * 1024);
            let used_pct = used * 100 / (used + free).max(1);
            let detail = format!(
                "{free_mb} MiB free on {} ({used_pct}% used)",
                probe.display()
            );
            if free_mb < 64 {
                Check::fail(
                    "disk",
                    detail,
                    "free space on the SD card (old logs, journal: `journalctl --vacuum-size=50M`)",
                )
            } else if used_pct >= 90 {
                Check::warn("disk", detail, "free space on the SD card soon")
            } else {
                Check::ok("disk", detail)
            }
        }
        Err(e) => Check::fail(
            "disk",
            format!("cannot read {}: {e}", probe.display()),
            "check that the state directory exists",
        ),
    }
}
