//! The configuration files of the chain's processes, written into the test's directory: the
//! provider's (HTTPS with its certificate, Portal activation, HUB client, enrollment with the
//! transport, MQTT ingest) and the gateway's (the CA it trusts; quick retries so restarts are
//! noticed within a second).

use std::path::Path;

/// The fixed header the provider declared to the Portal.
pub const PORTAL_KEY: &str = "chain-portal-key";
/// The provider's client credentials at the HUB.
pub const HUB_CLIENT: &str = "chain-provider";
pub const HUB_SECRET: &str = "chain-hub-secret";
/// The hospital that prescribes.
pub const PRESCRIBER: &str = "hospital-chain";
pub const HEART_FAILURE: &str =
    "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure";

/// The broker's two listeners, both on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct Broker {
    /// Plain MQTT: the provider's subscriber (it has no TLS MQTT client).
    pub plain_port: u16,
    /// MQTT over TLS (`mqtts://`): what gateways are enrolled with.
    pub tls_port: u16,
}

/// What the provider's configuration names.
#[derive(Debug)]
pub struct Provider<'a> {
    /// The port it listens on.
    pub port: u16,
    /// The port of `public_url`: its own, or the load balancer's in front of several.
    pub public_port: u16,
    /// The `[database]` table.
    pub database: &'a str,
    /// Where its key files are (shared by every instance).
    pub keys_dir: &'a Path,
    pub hub_url: &'a str,
    pub hub_secret_file: &'a Path,
    /// The server certificate (chain) and its key (mode 0600) for `[tls]`.
    pub cert_file: &'a Path,
    pub key_file: &'a Path,
    /// The broker: gateways are enrolled for MQTT over TLS and the provider subscribes.
    pub broker: Option<Broker>,
}

/// `provider.toml`: HTTPS on `port` with `[tls]`.
pub fn provider(p: &Provider<'_>) -> String {
    let (transport, mqtt) = match p.broker {
        None => ("transport = \"https\"".to_owned(), String::new()),
        Some(b) => (
            format!(
                "transport = \"mqtt\"\nmqtt_url = \"mqtts://127.0.0.1:{}\"",
                b.tls_port
            ),
            format!(
                "[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"tm-provider-chain\"\n",
                b.plain_port
            ),
        ),
    };
    format!(
        "listen = \"127.0.0.1:{port}\"\npublic_url = \"https://127.0.0.1:{public}\"\n\
         key_file = \"{keys}/provider.key\"\n\
         {store}\
         [tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n\
         [portal]\nfixed_headers = {{ \"X-Tm-Portal-Key\" = \"{PORTAL_KEY}\" }}\n\
         patient_fields = [\"patient.language\"]\n\
         [[portal.prescribers]]\nid = \"{PRESCRIBER}\"\ndpa_signed = true\n\
         [hub]\nurl = \"{hub}\"\nclient_id = \"{HUB_CLIENT}\"\n\
         client_secret_file = \"{secret}\"\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
         [enrollment]\n{transport}\nheartbeat_interval_s = 5\n\
         [attachments]\nlanguages = [\"nl\", \"en\"]\nkey_file = \"{keys}/attachments.key\"\n{mqtt}",
        port = p.port,
        public = p.public_port,
        keys = p.keys_dir.display(),
        store = p.database,
        hub = p.hub_url,
        secret = p.hub_secret_file.display(),
        cert = p.cert_file.display(),
        key = p.key_file.display(),
    )
}

/// `gateway.toml`: the sync settings come from the enrollment; `ca_file` is the CA of the
/// provider's and the broker's certificates; retries and receipt timeouts are short so a
/// restarted peer is found again quickly.
pub fn gateway(state_dir: &Path, ca_file: &Path) -> String {
    format!(
        "state_dir = \"{}\"\nlog_level = \"info\"\n\
         [sync]\nca_file = \"{}\"\n\
         heartbeat_interval_s = 2\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n\
         request_timeout_ms = 3000\nreceipt_timeout_ms = 3000\n",
        state_dir.display(),
        ca_file.display()
    )
}
