//! Network checks: the provider's HTTPS API and the MQTT broker, TLS verified.

use std::sync::Arc;

use tokio::net::TcpStream;

use super::{CHECK_TIMEOUT, Check};
use crate::enrollment::Enrollment;
use crate::sync::config::SyncConfig;

/// The provider answers its health endpoint over a verified connection.
pub(super) async fn provider(enrollment: &Enrollment, sync: &SyncConfig) -> Check {
    let base = enrollment.sync.https_url.trim_end_matches('/');
    let url = format!("{base}/healthz");
    let client = match crate::sync::https_client_builder(sync)
        .map_err(|e| e.to_string())
        .and_then(|b| b.timeout(CHECK_TIMEOUT).build().map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                "provider",
                format!("TLS setup failed: {e}"),
                "fix sync.ca_file in the configuration",
            );
        }
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => Check::ok("provider", format!("{base} reachable")),
        Ok(r) => Check::fail(
            "provider",
            format!("{base} answered {}", r.status()),
            "the provider is up but unhealthy: contact provider operations",
        ),
        Err(e) => {
            let mut cause = String::new();
            let mut source: Option<&dyn std::error::Error> = Some(&e);
            while let Some(s) = source {
                cause = s.to_string();
                source = s.source();
            }
            let fix = if is_certificate_refusal(&cause) {
                "the provider's certificate is not trusted: set sync.ca_file to the certificate \
                 authority that signed it, and check the gateway's clock (certificates are \
                 checked against it)"
            } else {
                "check the internet connection (router, cable, Wi-Fi) and the gateway's DNS"
            };
            Check::fail("provider", format!("{base} unreachable: {cause}"), fix)
        }
    }
}

/// Whether the innermost cause of a failed request is the server's certificate being refused
/// (rustls reports it as an invalid peer certificate: unknown issuer, expired, wrong name).
fn is_certificate_refusal(cause: &str) -> bool {
    cause.contains("invalid peer certificate")
}

/// The broker accepts a TCP (and for `mqtts://`, a verified TLS) connection.
pub(super) async fn broker(url: &str, sync: &SyncConfig) -> Check {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Check::fail(
            "broker",
            format!("unsupported broker URL {url}"),
            "enroll again",
        );
    };
    let host_port = rest.trim_end_matches('/');
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(h, _)| h)
        .to_owned();
    let stream = match tokio::time::timeout(CHECK_TIMEOUT, TcpStream::connect(host_port)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Check::fail(
                "broker",
                format!("{host_port} unreachable: {e}"),
                "check the internet connection; the outbox keeps readings meanwhile",
            );
        }
        Err(_) => {
            return Check::fail(
                "broker",
                format!("{host_port} did not answer"),
                "check the network",
            );
        }
    };
    if !tls {
        return Check::ok("broker", format!("{host_port} reachable (plain MQTT)"));
    }
    let config = match crate::sync::tls_client_config(sync) {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                "broker",
                e.to_string(),
                "fix sync.ca_file / client certificate",
            );
        }
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.clone()) else {
        return Check::fail(
            "broker",
            format!("invalid broker host {host}"),
            "enroll again",
        );
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config));
    match tokio::time::timeout(CHECK_TIMEOUT, connector.connect(name, stream)).await {
        Ok(Ok(_)) => Check::ok("broker", format!("{host_port} reachable, TLS verified")),
        Ok(Err(e)) => Check::fail(
            "broker",
            format!("TLS with {host_port} failed: {e}"),
            "check sync.ca_file matches the broker's certificate authority",
        ),
        Err(_) => Check::fail(
            "broker",
            format!("TLS with {host_port} timed out"),
            "check the network",
        ),
    }
}
