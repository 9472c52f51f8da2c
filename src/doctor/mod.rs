//! `tm-gateway doctor`: the checks a nurse or a support engineer runs on a gateway that does
//! not sync. Each check says what it found and, when something is wrong, how to fix it. The
//! checks only read: they never create a key, an outbox or an enrollment.
//!
//! Order follows the data path: configuration, identity, enrollment, BlueZ and the adapter,
//! the clock, the outbox (integrity, quota) and the disk, then the provider and the broker.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::enrollment::{Enrollment, EnrollmentError};

mod bluez;
mod network;
mod system;

/// How long a network or D-Bus check may take before it counts as unreachable.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// As it should be.
    Ok,
    /// Not blocking, but worth a look.
    Warn,
    /// Something is wrong: readings will not flow.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name (`identity`, `bluez`, ...).
    pub name: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// How to fix it, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub(crate) fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    pub(crate) fn warn(
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::with_fix(name, Verdict::Warn, detail.into(), fix.into())
    }
    pub(crate) fn fail(
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::with_fix(name, Verdict::Fail, detail.into(), fix.into())
    }
    fn with_fix(name: &'static str, verdict: Verdict, detail: String, fix: String) -> Self {
        Self {
            name,
            verdict,
            detail,
            fix: Some(fix),
        }
    }
}

/// Runs every check for the configuration at `config_path`.
pub async fn run_checks(config_path: &Path) -> Vec<Check> {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                "configuration",
                e.to_string(),
                format!(
                    "fix {} (see config/gateway.example.toml)",
                    config_path.display()
                ),
            )];
        }
    };
    let mut checks = vec![Check::ok(
        "configuration",
        format!("{} is valid", config_path.display()),
    )];
    checks.push(system::identity(&config));
    let enrollment = Enrollment::load(&config.state_dir);
    checks.push(match &enrollment {
        Ok(e) => Check::ok(
            "enrollment",
            format!("enrolled as {} with {}", e.gateway_id, e.provider_url),
        ),
        // Waiting to be claimed is where a gateway on its way to a home is meant to be.
        Err(EnrollmentError::NotEnrolled { .. }) if config.provider_url.is_some() => Check::warn(
            "enrollment",
            format!(
                "not enrolled yet: `tm-gateway run` announces it to {} to be claimed",
                config.provider_url.as_deref().unwrap_or_default()
            ),
            "claim it from the nurse's enrollment page with the code of `tm-gateway identity`",
        ),
        Err(err) => Check::fail(
            "enrollment",
            err.to_string(),
            "ask the provider for an enrollment code, then run `tm-gateway enroll --provider URL --code CODE`",
        ),
    });
    checks.push(bluez::adapter(&config.adapter).await);
    checks.push(bluez::clock().await);
    checks.push(system::outbox(&config));
    checks.push(system::disk(&config.state_dir));
    if let Ok(e) = &enrollment {
        checks.push(network::provider(e, &config.sync).await);
        if let Some(url) = &e.sync.mqtt_url {
            checks.push(network::broker(url, &config.sync).await);
        }
    }
    checks
}

/// True when any check failed.
pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.verdict == Verdict::Fail)
}

/// Human-readable report.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let mark = match c.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        out.push_str(&format!("{mark}  {:<13} {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("      {:<13} fix: {fix}\n", ""));
        }
    }
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    let warned = checks.iter().filter(|c| c.verdict == Verdict::Warn).count();
    if failed == 0 && warned == 0 {
        out.push_str("all checks passed\n");
    } else {
        out.push_str(&format!("{failed} problem(s), {warned} warning(s)\n"));
    }
    out
}
