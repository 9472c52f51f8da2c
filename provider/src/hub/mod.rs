//! The HUB side of the contract: our interpretation of it ([`contract`]), the client that
//! authenticates and PUTs status updates ([`client`]), and the durable outbox those updates
//! go through ([`outbox`]), delivered session by session (rows and statements in [`crate::store::hub_outbox`]); `[hub]` ([`settings`]).

pub mod client;
pub mod contract;
pub mod outbox;
pub mod settings;
