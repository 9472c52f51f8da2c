//! The configuration files of the chain's processes, written into the test's directory: the
//! broker's, the provider's (Portal activation, HUB client, enrollment with the transport,
//! MQTT ingest) and the gateway's (quick retries so restarts are noticed within a second).

use std::path::{Path, PathBuf};

/// The fixed header the provider declared to the Portal.
pub const PORTAL_KEY: &str = "chain-portal-key";
/// The provider's client credentials at the HUB.
pub const HUB_CLIENT: &str = "chain-provider";
pub const HUB_SECRET: &str = "chain-hub-secret";
/// The hospital that prescribes.
pub const PRESCRIBER: &str = "hospital-chain";
pub const HEART_FAILURE: &str =
    "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure";

/// `mosquitto.conf`: loopback only, anonymous, no persistence, log on stderr.
pub fn mosquitto(port: u16) -> String {
    format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
         log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
    )
}

/// What the provider's configuration names.
#[derive(Debug)]
pub struct Provider<'a> {
    pub port: u16,
    pub database: &'a Path,
    pub hub_url: &'a str,
    pub hub_secret_file: &'a Path,
    /// The broker's port: gateways are enrolled for MQTT and the provider subscribes.
    pub broker: Option<u16>,
}

/// `provider.toml`.
pub fn provider(p: &Provider<'_>) -> String {
    let (transport, mqtt) = match p.broker {
        None => ("transport = \"https\"".to_owned(), String::new()),
        Some(port) => (
            format!("transport = \"mqtt\"\nmqtt_url = \"mqtt://127.0.0.1:{port}\""),
            format!(
                "[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"tm-provider-chain\"\n"
            ),
        ),
    };
    format!(
        "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
         database = \"{db}\"\n\
         [portal]\nfixed_headers = {{ \"X-Tm-Portal-Key\" = \"{PORTAL_KEY}\" }}\n\
         patient_fields = [\"patient.language\"]\n\
         [[portal.prescribers]]\nid = \"{PRESCRIBER}\"\ndpa_signed = true\n\
         [hub]\nurl = \"{hub}\"\nclient_id = \"{HUB_CLIENT}\"\n\
         client_secret_file = \"{secret}\"\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
         [enrollment]\n{transport}\nheartbeat_interval_s = 5\n\
         [attachments]\nlanguages = [\"nl\", \"en\"]\n{mqtt}",
        port = p.port,
        db = p.database.display(),
        hub = p.hub_url,
        secret = p.hub_secret_file.display(),
    )
}

/// `gateway.toml`: the sync settings come from the enrollment; retries and receipt timeouts
/// are short so a restarted peer is found again quickly.
pub fn gateway(state_dir: &Path) -> String {
    format!(
        "state_dir = \"{}\"\nlog_level = \"info\"\n\
         [sync]\nheartbeat_interval_s = 2\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n\
         request_timeout_ms = 3000\nreceipt_timeout_ms = 3000\n",
        state_dir.display()
    )
}

/// `mosquitto` on the PATH, or where Debian installs it (`/usr/sbin`, often not on a user's
/// PATH).
pub fn mosquitto_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("mosquitto"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/mosquitto")])
        .find(|p| p.is_file())
        .expect("the MQTT chain needs mosquitto (Debian: apt-get install mosquitto)")
}
