//! `tm-gateway identity`: prints the gateway's public key, fingerprint and claim code, and with
//! `--label FILE.svg` writes the claim label for its box ([`crate::label`]).

use std::path::Path;

use base64::Engine as _;

use tm_protocol::claim::ClaimCode;

use crate::config::Config;
use crate::identity::Identity;

/// Arguments of `tm-gateway identity`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the claim label (the claim code as text and QR code, 62 x 29 mm SVG) to
    /// this file.
    #[arg(long, value_name = "FILE.svg")]
    label: Option<std::path::PathBuf>,
}

pub(super) fn run(config_path: &Path, args: &Args) -> anyhow::Result<i32> {
    let config = Config::load(config_path)?;
    let id = Identity::load_or_create(&config.key_path())?;
    let public = base64::engine::general_purpose::STANDARD.encode(id.public_key().as_bytes());
    let fingerprint = id.public_key().fingerprint();
    let claim = ClaimCode::of(&id.public_key());
    if let Some(path) = &args.label {
        write_label(path, claim)?;
    }
    if args.json {
        let out = serde_json::json!({
            "public_key": public,
            "fingerprint": fingerprint,
            "claim_code": claim.to_string(),
            "label": args.label,
            "created": id.created,
            "key_path": config.key_path(),
        });
        println!("{out}");
    } else {
        println!("public key : {public}");
        println!("fingerprint: {fingerprint}");
        println!("claim code : {claim}");
        println!(
            "key file   : {}{}",
            config.key_path().display(),
            if id.created { " (created now)" } else { "" }
        );
        if let Some(path) = &args.label {
            println!("label      : {}", path.display());
        }
    }
    Ok(0)
}

/// Writes the label next to `path` and renames it into place, so a label file is never half
/// written.
fn write_label(path: &Path, claim: ClaimCode) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, crate::label::svg(claim))
        .with_context(|| format!("cannot write the label {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot write the label {}", path.display()))?;
    Ok(())
}
