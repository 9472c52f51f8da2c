//! # tm-protocol: the contract between the gateway agent and the provider backend
//!
//! Both sides compile against this crate, so a field renamed here is renamed everywhere and
//! a mismatch is a compile error rather than a silent drop at run time.
//!
//! Map of the crate:
//! - [`messages`]: the versioned message types (reading batch, receipt, heartbeat, command,
//!   enrollment). Every message carries `v`; an unknown version or unknown field is rejected.
//! - [`codec`]: strict decoding with the size limits of [`limits`], and canonical encoding.
//! - [`reading_id`]: the deterministic SHA-256 identity of a reading that lets the provider
//!   de-duplicate re-sent device memories and retried batches.
//! - [`identity`]: Ed25519 keys (ring), PKCS#8 files kept at mode 0600.
//! - [`frame`]: the signed frame that carries every message over MQTT and HTTPS; the signature
//!   covers the exact bytes sent.
//! - [`routes`]: MQTT topic names and HTTP routes, defined once.
//! - [`setup`]: the claim hello of an unenrolled gateway and the setup state it reports to
//!   the nurse's page.
//!
//! Besides the wire, what both binaries (and the simulators) would otherwise write twice:
//! - [`backoff`]: the one retry policy of every loop that retries.
//! - [`report`]: an error and its causes on one line.
//! - [`config_file`]: reading a TOML configuration and reporting why it cannot be used.
//! - `migrations` (feature `sqlite`): applying the schema migrations of an SQLite file.
//! - [`prescription`]: the Portal contract's list of optional prescription fields, shared by
//!   the provider and the Portal emulator.
//!
//! The pipeline position: the gateway seals a batch into a frame, ships it, and the provider
//! opens the frame, verifies it against the enrolled gateway key, decodes it, commits the
//! readings and answers with a receipt (itself a signed frame) naming each reading id.

pub mod backoff;
pub mod claim;
pub mod codec;
pub mod config_file;
pub mod frame;
pub mod identity;
pub mod limits;
pub mod messages;
#[cfg(feature = "sqlite")]
pub mod migrations;
pub mod prescription;
pub mod reading_id;
pub mod received;
pub mod report;
pub mod routes;
pub mod setup;

pub use codec::{DecodeError, decode, encode};
pub use frame::{Frame, FrameError, MessageKind, seal};
pub use identity::{IdentityError, SigningKey, VerifyingKey};
pub use messages::*;
pub use reading_id::{ReadingIdInput, reading_id};

/// The protocol version this build speaks. A message with any other `v` is refused: a newer
/// gateway talking to an older provider must fail loudly, never be half-understood.
pub const PROTOCOL_VERSION: u16 = 1;
