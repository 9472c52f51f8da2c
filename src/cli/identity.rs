//! `tm-gateway identity`: prints the gateway's public key and fingerprint.

use std::path::Path;

use base64::Engine as _;

use crate::config::Config;
use crate::identity::Identity;

/// Arguments of `tm-gateway identity`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(config_path: &Path, args: &Args) -> anyhow::Result<i32> {
    let config = Config::load(config_path)?;
    let id = Identity::load_or_create(&config.key_path())?;
    let public = base64::engine::general_purpose::STANDARD.encode(id.public_key().as_bytes());
    let fingerprint = id.public_key().fingerprint();
    if args.json {
        let out = serde_json::json!({
            "public_key": public,
            "fingerprint": fingerprint,
            "created": id.created,
            "key_path": config.key_path(),
        });
        println!("{out}");
    } else {
        println!("public key : {public}");
        println!("fingerprint: {fingerprint}");
        println!(
            "key file   : {}{}",
            config.key_path().display(),
            if id.created { " (created now)" } else { "" }
        );
    }
    Ok(0)
}
