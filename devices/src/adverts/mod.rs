//! Decoders of advertisement payloads: service data (Xiaomi scales broadcast their weight
//! without a connection) and manufacturer data (Omron's status and record counters).

pub mod omron;
pub mod xiaomi;
