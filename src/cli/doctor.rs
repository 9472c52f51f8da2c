//! `tm-gateway doctor`: runs the gateway's health checks and prints what is wrong and how to
//! fix it. Exit status 1 when a check failed.

use std::path::Path;

/// Arguments of `tm-gateway doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(config_path: &Path, args: &Args) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let checks = runtime.block_on(crate::doctor::run_checks(config_path));
    if args.json {
        let out = serde_json::json!({
            "ok": !crate::doctor::any_failed(&checks),
            "checks": checks,
        });
        println!("{out}");
    } else {
        print!("{}", crate::doctor::render(&checks));
    }
    Ok(if crate::doctor::any_failed(&checks) {
        1
    } else {
        0
    })
}
