//! `tm-gateway status`: backlog, last successful sync, rejected rows and alarms, read from the
//! outbox through a read-only connection (works while the agent runs).

use std::path::Path;

/// Options of `tm-gateway status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(config_path: &Path, args: &Args) -> anyhow::Result<i32> {
    let config = crate::config::Config::load(config_path)?;
    let path = config.outbox_path();
    if !path.exists() {
        anyhow::bail!(
            "no outbox at {} yet: start the agent (tm-gateway run)",
            path.display()
        );
    }
    let status = crate::store::read_status(&path, config.store.quota_bytes())?;
    let enrollment = crate::enrollment::Enrollment::load(&config.state_dir).ok();
    if args.json {
        let mut value = serde_json::to_value(&status)?;
        value["backlog"] = status.backlog().into();
        value["gateway_id"] = enrollment.map(|e| e.gateway_id.to_string()).into();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(0);
    }
    match &enrollment {
        Some(e) => println!("gateway        {} ({:?})", e.gateway_id, e.sync.transport),
        None => println!("gateway        not enrolled"),
    }
    let oldest = status
        .oldest_unacknowledged_ms
        .map_or("-".to_string(), |ms| {
            let age = (crate::store::now_ms() - ms).max(0) / 1000;
            format!("{age} s")
        });
    println!(
        "backlog        {} readings ({} pending, {} in flight), oldest {oldest}",
        status.backlog(),
        status.pending,
        status.leased
    );
    println!(
        "last sync      {}",
        status.last_sync_at.as_deref().unwrap_or("never")
    );
    println!("acknowledged   {} (kept for audit)", status.acknowledged);
    println!("rejected       {}", status.rejected);
    for (id, reason) in &status.recent_rejections {
        println!("  {id}: {reason}");
    }
    println!("quarantined    {}", status.quarantined);
    println!(
        "disk           {} of {} bytes",
        status.used_bytes, status.quota_bytes
    );
    if let Some(e) = &status.last_error {
        println!("last error     {e}");
    }
    if status.alarms.is_empty() {
        println!("alarms         none");
    }
    for a in &status.alarms {
        println!("ALARM {}: {}", a.kind, a.message);
    }
    Ok(0)
}
