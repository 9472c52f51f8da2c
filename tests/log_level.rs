//! The configuration's `log_level` is applied to `tm-gateway run`, and `TM_LOG` overrides it.
//! The agent runs enrolled with a provider that is not there (so it warns about unsettled
//! batches) and no BlueZ (so it logs errors); which lines reach stderr shows the filter in force.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use tm_protocol::Transport;

/// Runs the agent for a while with `log_level` in its file and `tm_log` in the environment;
/// returns its stderr.
fn agent_log(log_level: &str, tm_log: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewaySide::new(
        dir.path(),
        "[sync]\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\n",
    );
    let text = std::fs::read_to_string(&gw.config).unwrap().replace(
        "log_level = \"warn\"",
        &format!("log_level = \"{log_level}\""),
    );
    std::fs::write(&gw.config, text).unwrap();
    let (provider_key, _) = tm_protocol::SigningKey::generate().unwrap();
    gw.enroll(
        &provider_key,
        Transport::Https,
        &format!("http://127.0.0.1:{}", free_port()),
    );
    let log = dir.path().join("agent.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tm-gateway"));
    command
        .arg("--config")
        .arg(&gw.config)
        .args(["run", "--simulate-readings", "20"])
        .env_remove("TM_LOG")
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    if let Some(filter) = tm_log {
        command.env("TM_LOG", filter);
    }
    let mut agent = Agent::from(command.spawn().unwrap());
    std::thread::sleep(Duration::from_millis(2500));
    kill(&mut agent);
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn log_level_from_the_file_is_applied_and_tm_log_overrides_it() {
    let quiet = agent_log("error", None);
    assert!(quiet.contains(" ERROR "), "errors are logged: {quiet}");
    assert!(
        !quiet.contains(" WARN "),
        "log_level = error hides warnings: {quiet}"
    );

    let verbose = agent_log("warn", None);
    assert!(
        verbose.contains(" WARN "),
        "log_level = warn shows warnings: {verbose}"
    );

    let overridden = agent_log("error", Some("warn"));
    assert!(
        overridden.contains(" WARN "),
        "TM_LOG overrides the file: {overridden}"
    );
}
