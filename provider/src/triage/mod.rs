//! Clinical triage: the carepath's rules over a patient's readings ([`rules`]), configured per
//! carepath and overridden per patient ([`settings`]), judged as readings arrive by the sweep
//! ([`sweep`]) into alerts stored once per episode ([`crate::store::triage`]).
//!
//! This is the provider's clinical side, for the nurses who follow the patients; it shares
//! nothing with fleet health (`crate::ops`), which is about gateways.

pub mod rules;
pub mod settings;
pub mod sweep;

pub use settings::{Triage, TriageSection};
