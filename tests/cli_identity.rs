//! `tm-gateway identity` as a user runs it: the key is created once with mode 0600, reloaded on
//! the next start, and a key file readable by others stops the command with advice.

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
    let key = state.join("gateway.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let second = gateway(&config, &["identity", "--json"]);
    let second: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(second["created"], false);
    assert_eq!(second["public_key"], first["public_key"]);

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
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
