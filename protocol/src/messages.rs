//! The versioned messages exchanged between gateway and provider.
//!
//! Every top-level message has a `v` field equal to [`crate::PROTOCOL_VERSION`] and is declared
//! with `deny_unknown_fields`: a field we do not know is an error, never ignored, because an
//! ignored field in clinical data is data lost without anyone noticing. Identifiers are
//! newtypes that validate their shape when deserialized, so a gateway id can never smuggle an
//! MQTT wildcard into a topic.
//!
//! Nothing here identifies a patient: the gateway knows its own id, its devices and its
//! readings. The provider maps the gateway to a session.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::limits::MAX_ID_BYTES;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $check:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn new(s: impl Into<String>) -> Result<Self, InvalidId> {
                let s = s.into();
                let check: fn(&str) -> bool = $check;
                if check(&s) {
                    Ok(Self(s))
                } else {
                    Err(InvalidId { what: $what, value_len: s.len() })
                }
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }
    };
}

/// An identifier that does not have the required shape. The value itself is not echoed: it may
/// come from an attacker and end up in a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} ({value_len} bytes): expected 1-64 characters of a-z, 0-9 and '-'")]
pub struct InvalidId {
    /// Which identifier kind failed (`gateway id`, `batch id`, ...).
    pub what: &'static str,
    /// Length of the rejected value in bytes: all that is told about it.
    pub value_len: usize,
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

id_newtype!(
    /// A gateway's identity at the provider, assigned at enrollment. Safe to embed in topics.
    GatewayId,
    is_slug,
    "gateway id"
);
id_newtype!(
    /// One shipment of readings; doubles as the HTTP `Idempotency-Key`.
    BatchId,
    is_slug,
    "batch id"
);
id_newtype!(
    /// One remote command; the agent refuses a command id it has already executed.
    CommandId,
    is_slug,
    "command id"
);
id_newtype!(
    /// The deterministic identity of a reading: lowercase hex SHA-256 (see [`crate::reading_id`]).
    ReadingId,
    is_sha256_hex,
    "reading id"
);

/// What a reading measures. The provider charts each kind with its own FHIR profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadingKind {
    /// Weight scale (0x2A9D, Xiaomi adverts).
    BodyWeight,
    /// Body composition (0x2A9C, Mi Body Composition Scale 2).
    BodyComposition,
    /// Blood pressure (0x2A35).
    BloodPressure,
    /// Cuff pressure while measuring (0x2A36); informative only.
    CuffPressure,
    /// Body temperature (0x2A1C, 0x2A1E).
    BodyTemperature,
    /// Blood glucose (0x2A18).
    Glucose,
    /// Pulse oximetry (0x2A5E, 0x2A5F).
    PulseOximetry,
    /// Heart rate (0x2A37).
    HeartRate,
    /// Bytes the gateway could not decode. They are shipped anyway (raw payload kept) so that
    /// nothing a device sent is lost; the provider stores them but never charts them.
    Unrecognized,
}

impl ReadingKind {
    /// Every kind.
    pub const ALL: [ReadingKind; 9] = [
        Self::BodyWeight,
        Self::BodyComposition,
        Self::BloodPressure,
        Self::CuffPressure,
        Self::BodyTemperature,
        Self::Glucose,
        Self::PulseOximetry,
        Self::HeartRate,
        Self::Unrecognized,
    ];

    /// The kind's name on the wire (`blood-pressure`), as its JSON encoding writes it.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::BodyWeight => "body-weight",
            Self::BodyComposition => "body-composition",
            Self::BloodPressure => "blood-pressure",
            Self::CuffPressure => "cuff-pressure",
            Self::BodyTemperature => "body-temperature",
            Self::Glucose => "glucose",
            Self::PulseOximetry => "pulse-oximetry",
            Self::HeartRate => "heart-rate",
            Self::Unrecognized => "unrecognized",
        }
    }
}

/// One measured quantity: a LOINC code, a value and a UCUM unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// LOINC code, for example `8480-6` (systolic blood pressure).
    pub code: String,
    /// Value in `unit`.
    pub value: f64,
    /// UCUM unit, for example `mm[Hg]`.
    pub unit: String,
    /// The value as the device sent it, when it was converted (kPa to mm[Hg], lb to kg);
    /// absent (left out of the JSON) when `value` is already in the device's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Quantity>,
}

/// A value with its unit, as sent by the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantity {
    /// The numeric value.
    pub value: f64,
    /// The unit as UCUM.
    pub unit: String,
}

/// A component the device reported as a special value (NaN, NRes, +/-INF): no number, the
/// reason kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingComponent {
    /// LOINC code of the component that has no value.
    pub code: String,
    /// Why, for example `nan`, `nres`, `positive-infinity`.
    pub reason: String,
}

/// How far the effective time of a reading can be trusted (docs/gatt.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeQuality {
    /// The device clock was read this connection and agreed with the gateway within tolerance.
    DeviceSynced,
    /// The device timestamp was corrected with the offset measured this connection.
    CorrectedByOffset,
    /// The device clock was unset; a live reading got the gateway's receive time.
    DeviceUnsetReceiveTime,
    /// The device clock was unset and the reading came from memory: its time is not known.
    DeviceUnsetUntrusted,
    /// The device sends no timestamp; the gateway's receive time is used.
    NoDeviceTime,
}

/// What the gateway knows about the measuring device (Device Information Service and link).
/// Filled by the gateway from its paired-devices entry; every optional field may be absent
/// from the JSON, and each text is at most 1 KiB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceInfo {
    /// Bluetooth address, upper-case `AA:BB:CC:DD:EE:FF`; part of the reading id.
    pub address: String,
    /// DIS Manufacturer Name (0x2A29).
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// DIS Model Number (0x2A24).
    #[serde(default)]
    pub model: Option<String>,
    /// DIS Serial Number (0x2A25).
    #[serde(default)]
    pub serial: Option<String>,
    /// DIS Firmware Revision (0x2A26).
    #[serde(default)]
    pub firmware: Option<String>,
    /// The catalog model id the gateway matched at pairing; `None` for a device the catalog
    /// does not know.
    #[serde(default)]
    pub catalog_model: Option<String>,
}

/// One measurement as the gateway captured it: normalized components plus everything needed to
/// re-derive them (raw payload, characteristic, device timestamp).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    /// Deterministic identity (see [`crate::reading_id`]): the same record sent twice by the
    /// device gets the same id, which is what both sides de-duplicate on.
    pub reading_id: ReadingId,
    /// The measuring device.
    pub device: DeviceInfo,
    /// What was measured.
    pub kind: ReadingKind,
    /// The values, each with LOINC code and UCUM unit (at most 32).
    pub components: Vec<Component>,
    /// Components the device reported without a number.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<MissingComponent>,
    /// Named status flags (`irregular-pulse`, `cuff-fit-loose`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// The timestamp as the device sent it: local wall time (with the device's own time
    /// offset field applied), never corrected by the gateway. `None`: the payload has none.
    pub device_time: Option<NaiveDateTime>,
    /// The time of measurement the provider charts, with the gateway's UTC offset: the device
    /// time corrected by `clock_offset_ms`, or the receive time when that cannot be trusted.
    pub effective_time: DateTime<FixedOffset>,
    /// When the gateway received the bytes (gateway clock). The provider rejects a reading
    /// received before the gateway's enrollment or more than 10 minutes in its future.
    pub received_at: DateTime<Utc>,
    /// Device clock minus gateway clock, measured at connection, in milliseconds; `None`
    /// when no clock was read (adverts, devices without a readable clock).
    pub clock_offset_ms: Option<i64>,
    /// How far `effective_time` can be trusted.
    pub time_quality: TimeQuality,
    /// Where the bytes came from: a 16-bit characteristic (`2A35`), `adv:<uuid>` or `mfr:<id>`
    /// (hex, upper case); part of the reading id.
    pub characteristic: String,
    /// The device's user slot, when it has several users; part of the reading id.
    pub user_slot: Option<u8>,
    /// The device's record sequence number, when it numbers records: the gateway's RACP
    /// high-water mark advances on it.
    pub sequence: Option<u32>,
    /// The exact bytes the device sent (at most 512, base64 in JSON), kept so the values can
    /// be decoded again.
    #[serde(with = "b64")]
    pub raw: Vec<u8>,
    /// Battery level in percent read at the connection that carried the reading; `None` for
    /// adverts or devices without a battery service.
    pub battery_pct: Option<u8>,
    /// Signal strength in dBm; the gateway does not measure it yet and sends `None`.
    pub rssi_dbm: Option<i16>,
}

/// A shipment of readings from one gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadingBatch {
    /// Protocol version ([`crate::PROTOCOL_VERSION`]), checked before the rest is parsed.
    pub v: u16,
    /// The sending gateway; must equal the frame's signer.
    pub gateway_id: GatewayId,
    /// This shipment, fresh for every lease: rows sent again go under a new id. Also the HTTP
    /// `Idempotency-Key` (which must equal it) and named by the receipt.
    pub batch_id: BatchId,
    /// When the gateway sealed the batch (gateway clock); informative only.
    pub created_at: DateTime<Utc>,
    /// The readings (at most 1,000), per device in capture order; a batch may mix devices.
    pub readings: Vec<Reading>,
}

/// The provider's answer to a batch, sent only after the readings are committed. A reading is
/// settled on the gateway only when a receipt names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Protocol version.
    pub v: u16,
    /// The batch this answers: over MQTT the gateway matches receipts to waiting batches by
    /// it; over HTTPS a receipt naming another batch is refused.
    pub batch_id: BatchId,
    /// Committed (now or earlier: a duplicate is accepted again, never stored twice). Every
    /// reading named here may be settled by the gateway.
    pub accepted: Vec<ReadingId>,
    /// Refused for good, each with the reason; the gateway keeps them visible, never retries.
    pub rejected: Vec<Rejection>,
    /// The accepted readings that were already stored for the gateway's session before this
    /// batch (a re-sent reading, a replayed batch): also listed in `accepted`, named here so
    /// "already had it" is told apart from "stored now". Left out of the JSON when empty, so a
    /// receipt without duplicates has the same bytes as before the field existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<ReadingId>,
}

/// A reading the provider refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// The refused reading; its row on the gateway becomes rejected, never sent again.
    pub reading_id: ReadingId,
    /// Why, for the operator (shown by `tm-gateway status`); names no value or patient.
    pub reason: String,
}

/// Backlog of readings not yet acknowledged by the provider, from the gateway's outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backlog {
    /// Unacknowledged readings: pending plus in flight.
    pub depth: u64,
    /// Age of the oldest unacknowledged reading in seconds, from its receive time to the
    /// heartbeat's `sent_at`; `None` when the backlog is empty.
    pub oldest_age_s: Option<u64>,
    /// Readings the provider rejected, kept in the outbox (they are never pruned); any
    /// above zero raises an ops alert.
    pub rejected: u64,
}

/// Health of one paired device as the gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceHealth {
    /// Bluetooth address, upper case.
    pub address: String,
    /// Catalog model id, else the DIS model number; `None` when neither is known.
    pub model: Option<String>,
    /// When the gateway paired or last connected to the device (adverts do not count);
    /// gateway clock.
    pub last_seen: Option<DateTime<Utc>>,
    /// Receive time of the last reading committed from it over a connection; `None` before
    /// the first.
    pub last_reading: Option<DateTime<Utc>>,
    /// Battery level in percent at pairing or the last connection; `None` when never read.
    pub battery_pct: Option<u8>,
    /// Last RSSI in dBm; the gateway does not measure it yet and sends `None`.
    pub rssi_dbm: Option<i16>,
}

/// The gateway clock's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockState {
    /// NTP-synchronized (systemd-timesyncd or chrony says so).
    Synchronized,
    /// Not synchronized: device clocks are not set, readings keep device time quality.
    Unsynchronized,
    /// Could not be determined.
    Unknown,
}

/// Disk use of the gateway's outbox against its quota; the provider alerts above
/// `disk_max_pct` of `used_bytes / quota_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskUse {
    /// Bytes of the outbox database's pages in use (what the gateway's quota is checked
    /// against).
    pub used_bytes: u64,
    /// The configured quota in bytes (`store.quota_mb`); never 0 from a valid gateway, and a
    /// 0 gives no percentage.
    pub quota_bytes: u64,
}

/// Sent every heartbeat interval (a minute by default) over the gateway's transport, so
/// operations can see a gateway they never visit. Not acknowledged: a lost one is replaced by
/// the next. The provider keeps only the latest per gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Protocol version.
    pub v: u16,
    /// The reporting gateway (must be the frame's signer).
    pub gateway_id: GatewayId,
    /// When it was built (gateway clock); the provider judges liveness by its own receive
    /// time, not by this.
    pub sent_at: DateTime<Utc>,
    /// Agent version (the `tm-gateway` package version).
    pub version: String,
    /// Seconds since the agent's heartbeat actor started (about the agent's uptime).
    pub uptime_s: u64,
    /// Unacknowledged readings.
    pub backlog: Backlog,
    /// Paired devices (at most 64). A device missing here is taken as unpaired by the
    /// provider, unless [`Self::devices_unreadable`] says the list is unknown.
    pub devices: Vec<DeviceHealth>,
    /// The gateway could not read its paired-devices file: `devices` is empty because it is
    /// unknown, not because every device was unpaired (the provider leaves its device records
    /// as they are). Sent only when set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub devices_unreadable: bool,
    /// Gateway clock.
    pub clock: ClockState,
    /// Outbox disk use.
    pub disk: DiskUse,
    /// The raised alarms (`kind +kind ...: message of the most severe`), else the last sync
    /// error; at most 1 KiB, no values, no patient data. `None`: nothing to report.
    pub last_error: Option<String>,
    /// Sent only in setup mode: the devices in range and the pairings under way, for the
    /// nurse's page ([`crate::setup`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<crate::setup::SetupState>,
}

/// Whether a gateway's MQTT connection is up, as carried by [`Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkState {
    /// Published (retained) by the gateway right after it connected.
    Online,
    /// The connection's last-will, published by the broker when the connection drops (or by
    /// the gateway itself when it stops cleanly).
    Offline,
}

/// The gateway's liveness on its retained status topic, signed with the gateway key like every
/// other gateway message, so nobody else can flip a gateway online or offline.
///
/// `connection` is fixed before each connection attempt and carried by both that
/// connection's `online` and its last-will `offline`. It only grows on one gateway (see the
/// agent's MQTT transport), so the provider can tell a replayed last-will of an older
/// connection from the current one and ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// Protocol version.
    pub v: u16,
    /// The reporting gateway (must be the frame's signer).
    pub gateway_id: GatewayId,
    /// Online or offline.
    pub state: LinkState,
    /// The connection this status belongs to: the gateway's clock in milliseconds when that
    /// connection was set up, always above its previous one in the same process.
    pub connection: u64,
}

/// What a remote command asks the agent to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CommandAction {
    /// Ship the backlog now instead of waiting for the next backoff tick.
    ResyncNow,
    /// Change the agent's log filter until restart (`info`, `debug`, ...).
    SetLogLevel {
        /// A tracing filter directive.
        level: String,
    },
    /// Reconnect to every paired device and fetch its stored records again.
    RereadDevices,
    /// Enter (or stay in) setup mode until `until`: scan, poll commands every second and
    /// report [`crate::setup::SetupState`] in a heartbeat every two seconds. An `until` in
    /// the past ends setup mode.
    Setup {
        /// When setup mode ends (provider clock; a few minutes ahead).
        until: DateTime<Utc>,
    },
    /// Pair the device at `address` and identify it (maker, battery, clock), reporting each
    /// step in the setup heartbeats; answered at once, the pairing runs on.
    Pair {
        /// Bluetooth address, upper case.
        address: String,
    },
    /// The PIN, passkey or confirmation a pairing in progress waits for.
    PairSecret {
        /// The device being paired.
        address: String,
        /// Digits as the nurse typed them, or `yes` to confirm a shown number. Never logged,
        /// never stored by the gateway.
        secret: String,
    },
    /// Remove the bond and stop collecting from the device.
    Unpair {
        /// Bluetooth address, upper case.
        address: String,
    },
    /// Operations released this gateway from its session: forget the enrollment (kept aside
    /// as `enrollment.json.released`) and go back to announcing itself unclaimed, with the
    /// same key and claim code. Readings not yet confirmed stay in the outbox.
    Release,
}

/// A command from the provider to one gateway, signed with the provider's key. The agent
/// refuses it when the signature fails, it is for another gateway, it has expired, or its id
/// was seen before (replay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Protocol version.
    pub v: u16,
    /// Unique id; executed at most once (the gateway records it durably before running it).
    pub command_id: CommandId,
    /// The gateway it is for; any other gateway refuses it.
    pub gateway_id: GatewayId,
    /// When the provider issued it (provider clock).
    pub issued_at: DateTime<Utc>,
    /// At and after this instant (gateway clock) the command is refused, and the provider
    /// stops serving it: `issued_at` plus `[ops] command_ttl_s`.
    pub expires_at: DateTime<Utc>,
    /// What to do.
    pub action: CommandAction,
}

/// How a command ended on the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandStatus {
    /// It did what it asks.
    Done,
    /// This agent cannot do it (no BLE side, no reloadable log filter).
    NotAvailable,
    /// It was tried and failed.
    Failed,
}

/// The gateway's report of one executed command, signed with the gateway key and sent over
/// the gateway's transport (MQTT or HTTPS), like a heartbeat. Only admitted commands are
/// reported: a refused frame (forged, expired, replayed) gets no answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    /// Protocol version.
    pub v: u16,
    /// The reporting gateway (must be the frame's signer).
    pub gateway_id: GatewayId,
    /// The command it executed; the provider keeps the first result of each and ignores a
    /// result for a command it never sent this gateway.
    pub command_id: CommandId,
    /// How it ended.
    pub status: CommandStatus,
    /// What happened, for the operator (no values, no patient data); at most 1 KiB.
    pub detail: String,
    /// When execution ended (gateway clock); a report sent again keeps this time.
    pub finished_at: DateTime<Utc>,
}

/// Sent by `tm-gateway enroll` with the one-time code the nurse read from the enrollment page.
/// The frame carrying it is signed with the new key, proving possession.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentRequest {
    /// Protocol version.
    pub v: u16,
    /// One-time enrollment code as typed (8 characters); single use, it expires and binds the
    /// gateway to the code's session.
    pub code: String,
    /// The gateway's Ed25519 public key (32 bytes, base64 in JSON): the key the request frame
    /// is signed with, and the gateway's identity from now on.
    #[serde(with = "b64")]
    pub public_key: Vec<u8>,
    /// Agent version (the `tm-gateway` package version).
    pub agent_version: String,
}

/// How the gateway ships readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// MQTT through a broker.
    Mqtt,
    /// HTTPS straight to the provider.
    Https,
}

/// Sync settings handed to the gateway at enrollment (the provider's `[enrollment]`); the
/// gateway keeps them in its enrollment file until it enrolls again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    /// The transport readings, heartbeats and command results go over.
    pub transport: Transport,
    /// Base URL of the provider's gateway API (the provider's `public_url`): the HTTPS
    /// transport, and the command poll whatever the transport.
    pub https_url: String,
    /// Broker URL `mqtts://host:port` or `mqtt://host:port`; required for the MQTT transport,
    /// `None` otherwise.
    pub mqtt_url: Option<String>,
    /// Seconds between heartbeats and command polls (default 60); the gateway's
    /// `[sync] heartbeat_interval_s` overrides it.
    pub heartbeat_interval_s: u32,
}

/// The provider's answer to a valid enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentResponse {
    /// Protocol version.
    pub v: u16,
    /// The gateway's id from now on: the signer it must name in every frame.
    pub gateway_id: GatewayId,
    /// The provider's Ed25519 public key (32 bytes, base64 in JSON): receipts and commands are
    /// verified against it, and so is the frame carrying this answer.
    #[serde(with = "b64")]
    pub provider_public_key: Vec<u8>,
    /// How to sync.
    pub sync: SyncSettings,
}

/// Base64 (standard alphabet, padded) for byte fields in JSON.
pub mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes bytes as base64 text.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    /// Deserializes base64 text into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
