//! Decoders of the SIG health profiles, one module per service. Each takes the payload of one
//! characteristic and returns a [`crate::Decoded`] or a typed error; none panics on any input.

pub mod blood_pressure;
pub mod glucose;
pub mod heart_rate;
pub mod plx;
pub mod racp;
pub mod temperature;
pub mod weight;
