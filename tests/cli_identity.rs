//! `tm-gateway identity` as a user runs it: the key is created once with mode 0600, reloaded on
//! the next start, its claim code printed and written on the label, and a key file readable by
//! others stops the command with advice.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

fn gateway(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tm-gateway"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("TM_GATEWAY_CONFIG")
        .output()
        .expect("run tm-gateway")
}

#[test]
fn identity_is_created_once_and_protected() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, format!("state_dir = {:?}\n", state)).unwrap();

    let first = gateway(&config, &["identity", "--json"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["created"], true);
    let key_file = state.join("gateway.key");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let label = dir.path().join("label.svg");
    let second = gateway(
        &config,
        &["identity", "--json", "--label", label.to_str().unwrap()],
    );
    let second: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(second["created"], false);
    assert_eq!(second["public_key"], first["public_key"]);
    // The claim code is the public key's, and the label carries it as text.
    use base64::Engine as _;
    let public = base64::engine::general_purpose::STANDARD
        .decode(first["public_key"].as_str().unwrap())
        .unwrap();
    let key = tm_protocol::VerifyingKey::from_bytes(&public).unwrap();
    let claim = tm_protocol::claim::ClaimCode::of(&key).to_string();
    assert_eq!(second["claim_code"], claim.as_str());
    assert_eq!(first["claim_code"], claim.as_str());
    let svg = std::fs::read_to_string(&label).unwrap();
    assert!(svg.starts_with("<?xml"), "{svg}");
    assert!(svg.contains(&format!(">{claim}</text>")));

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let refused = gateway(&config, &["identity"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

#[test]
fn a_typo_in_the_configuration_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "state_dri = \"/tmp/x\"\n").unwrap();
    let out = gateway(&config, &["check-config"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `state_dri`"), "{stderr}");
}
