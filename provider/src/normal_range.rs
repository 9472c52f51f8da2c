//! A value's normal range and where a value lies against it: what the outputs mark values
//! with ([`crate::outputs::series::Ranges`]) and what the triage rules judge
//! ([`crate::triage::rules`]). A leaf: it imports nothing of the provider.

use serde::Deserialize;

/// A normal range; either bound may be open.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Values below are marked low.
    pub low: Option<f64>,
    /// Values above are marked high.
    pub high: Option<f64>,
}

impl Range {
    /// Where `value` lies.
    pub fn flag(self, value: f64) -> Flag {
        match self {
            Range { low: Some(l), .. } if value < l => Flag::Low,
            Range { high: Some(h), .. } if value > h => Flag::High,
            _ => Flag::Normal,
        }
    }
}

/// Where a value lies against its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Inside the range, or no range configured.
    Normal,
    /// Below `low`.
    Low,
    /// Above `high`.
    High,
}
