//! `[ops]`: the operations dashboard's secret and the alert thresholds, every one with a
//! default so a provider without the section still watches its fleet.

use std::path::PathBuf;

use chrono::NaiveTime;
use serde::Deserialize;
use tm_protocol::config_file::ConfigError;

/// The `[ops]` section as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsSection {
    /// File holding the dashboard/API token (bearer token, or the password of basic auth),
    /// read once at start and trimmed; an empty file is refused. Without it the operations
    /// routes answer 404.
    pub token_file: Option<PathBuf>,
    /// Seconds between two runs of the alert evaluator (positive; default 60).
    pub evaluate_interval_s: u64,
    /// A gateway is online while its last heartbeat is at most this old and no later
    /// last-will said `offline` (positive; default 180 s, three missed one-minute heartbeats).
    pub online_within_s: u64,
    /// Alert when an active gateway is not online and has not been heard (or, never heard,
    /// was enrolled) for more than this many hours (default 2).
    pub offline_alert_h: u64,
    /// Alert when the gateway's oldest unacknowledged reading, per its latest heartbeat, is
    /// older than this many hours (default 6).
    pub backlog_max_age_h: u64,
    /// Alert when the backlog has grown from heartbeat to heartbeat without falling for more
    /// than this many hours (default 2).
    pub backlog_growing_h: u64,
    /// Alert when a device's reported battery is below this percentage (at most 100; default
    /// 20; 0 never alerts).
    pub battery_low_pct: u8,
    /// Alert when the outbox uses more than this percentage of its quota, per the heartbeat
    /// (1 to 100; default 80, the gateway's own `quota-high` level).
    pub disk_max_pct: u8,
    /// The patients' time zone (IANA name), in which adherence deadlines fall (default
    /// `Europe/Brussels`).
    pub patient_time_zone: String,
    /// Local time (`HH:MM`, in `patient_time_zone`) by which the day's scheduled measurements
    /// are due (default `11:00`).
    pub adherence_deadline: String,
    /// Seconds a remote command stays valid after it is issued (positive; default 900): past
    /// it the gateway refuses it and the poll no longer serves it.
    pub command_ttl_s: u64,
}

impl Default for OpsSection {
    fn default() -> Self {
        Self {
            token_file: None,
            evaluate_interval_s: 60,
            online_within_s: 180,
            offline_alert_h: 2,
            backlog_max_age_h: 6,
            backlog_growing_h: 2,
            battery_low_pct: 20,
            disk_max_pct: 80,
            patient_time_zone: "Europe/Brussels".into(),
            adherence_deadline: "11:00".into(),
            command_ttl_s: 900,
        }
    }
}

/// The thresholds the alert evaluator applies, validated: the `[ops]` values converted to
/// durations, a parsed time zone and a parsed deadline. Built once at start, never changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// See [`OpsSection::online_within_s`].
    pub online_within: chrono::Duration,
    /// See [`OpsSection::offline_alert_h`].
    pub offline_after: chrono::Duration,
    /// See [`OpsSection::backlog_max_age_h`].
    pub backlog_max_age: chrono::Duration,
    /// See [`OpsSection::backlog_growing_h`].
    pub backlog_growing_for: chrono::Duration,
    /// See [`OpsSection::battery_low_pct`].
    pub battery_low_pct: u8,
    /// See [`OpsSection::disk_max_pct`].
    pub disk_max_pct: u8,
    /// See [`OpsSection::patient_time_zone`].
    pub time_zone: chrono_tz::Tz,
    /// See [`OpsSection::adherence_deadline`].
    pub deadline: NaiveTime,
}

impl Default for Thresholds {
    fn default() -> Self {
        OpsSection::default()
            .thresholds()
            .expect("the defaults are valid")
    }
}

fn hours(h: u64) -> chrono::Duration {
    chrono::Duration::hours(i64::try_from(h).unwrap_or(i64::MAX / 3_600_000))
}

impl OpsSection {
    /// Validates the section into thresholds.
    pub fn thresholds(&self) -> Result<Thresholds, ConfigError> {
        let time_zone: chrono_tz::Tz = self.patient_time_zone.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "ops.patient_time_zone {:?} is not an IANA time zone",
                self.patient_time_zone
            ))
        })?;
        let deadline =
            NaiveTime::parse_from_str(&self.adherence_deadline, "%H:%M").map_err(|_| {
                ConfigError::Invalid(format!(
                    "ops.adherence_deadline {:?} is not HH:MM",
                    self.adherence_deadline
                ))
            })?;
        if self.disk_max_pct == 0 || self.disk_max_pct > 100 || self.battery_low_pct > 100 {
            return Err(ConfigError::Invalid(
                "ops.disk_max_pct must be 1-100 and ops.battery_low_pct at most 100".into(),
            ));
        }
        if self.evaluate_interval_s == 0 || self.online_within_s == 0 || self.command_ttl_s == 0 {
            return Err(ConfigError::Invalid(
                "ops intervals (evaluate_interval_s, online_within_s, command_ttl_s) must be positive"
                    .into(),
            ));
        }
        Ok(Thresholds {
            online_within: chrono::Duration::seconds(
                i64::try_from(self.online_within_s).unwrap_or(i64::MAX / 1000),
            ),
            offline_after: hours(self.offline_alert_h),
            backlog_max_age: hours(self.backlog_max_age_h),
            backlog_growing_for: hours(self.backlog_growing_h),
            battery_low_pct: self.battery_low_pct,
            disk_max_pct: self.disk_max_pct,
            time_zone,
            deadline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let t = Thresholds::default();
        assert_eq!(t.time_zone, chrono_tz::Europe::Brussels);
        assert_eq!(t.disk_max_pct, 80);
        let bad = OpsSection {
            patient_time_zone: "Mars/Olympus".into(),
            ..OpsSection::default()
        };
        assert!(
            bad.thresholds()
                .unwrap_err()
                .to_string()
                .contains("Mars/Olympus")
        );
        let bad = OpsSection {
            adherence_deadline: "25:99".into(),
            ..OpsSection::default()
        };
        assert!(bad.thresholds().unwrap_err().to_string().contains("HH:MM"));
    }
}
