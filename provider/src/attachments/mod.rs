//! # Attachments: what the HUB announces and the EHR downloads
//!
//! The HUB stores only metadata; the EHR pulls each attachment from our URI. Per session:
//! `fhir` (the Bundle), `pdf-<lang>` (one report per configured language, with
//! `contentLanguage`) and `dashboard` (`x-tm-dashboard`, framed by the EHR). Ids are stable, so
//! an update of the same file keeps its id and the EHR sees a new `etag`.
//!
//! Metadata ([`Attachment`]): `contentLength`, `contentMD5` (base64 of the raw MD5 digest, as
//! HTTP Content-MD5; docs/portal-hub.md §5), `etag` (the quoted hex digest: changes exactly
//! when the bytes do), `lastModified` (the session's latest ingest), and a `uri` signed by
//! [`token::UriSigner`]. [`routes`] serves the same bytes with the same headers.
//!
//! The integration implements [`SessionSource`] (session context + readings + last change) over
//! its tables; everything else here is pure rendering and HTTP.

pub mod routes;
pub mod token;

use std::future::Future;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use md5::{Digest, Md5};
use serde::Serialize;
use tm_protocol::Reading;

use crate::outputs::dashboard::{self, DashboardOptions};
use crate::outputs::fhir::{self, FhirOptions};
use crate::outputs::findings::Findings;
use crate::outputs::pdf;
use crate::outputs::series::Ranges;
use crate::outputs::{Language, SessionContext};
use crate::symptom::SymptomAnswer;
pub use routes::routes;
pub use token::UriSigner;

/// A session as the outputs need it.
#[derive(Debug, Clone)]
pub struct SessionData {
    /// The context.
    pub context: SessionContext,
    /// Every reading of the session.
    pub readings: Vec<Reading>,
    /// Every symptom answer of the session.
    pub symptoms: Vec<SymptomAnswer>,
    /// When the session's data last changed (the attachments' `lastModified`).
    pub last_modified: DateTime<Utc>,
}

/// The error of a [`SessionSource`]; answered 503 (the EHR retries), never detailed.
#[derive(Debug, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct SourceError(pub String);

/// Where the attachment server finds a session's data (the session store implements it).
pub trait SessionSource: Send + Sync + 'static {
    /// The session `telemonitoring_id`, or `None` when it does not exist.
    fn load(
        &self,
        telemonitoring_id: &str,
    ) -> impl Future<Output = Result<Option<SessionData>, SourceError>> + Send;
}

/// How the outputs are rendered.
#[derive(Debug, Clone)]
pub struct OutputOptions {
    /// FHIR identifiers.
    pub fhir: FhirOptions,
    /// Normal ranges of the PDF and the dashboard.
    pub ranges: Ranges,
    /// Dashboard framing.
    pub dashboard: DashboardOptions,
    /// The triage rules whose findings the PDF and the dashboard list (`[triage]`).
    pub triage: crate::triage::Triage,
    /// The patients' time zone, the days of those rules (`[ops] patient_time_zone`).
    pub time_zone: chrono_tz::Tz,
}

/// Which attachment an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentKind {
    /// `fhir`.
    Fhir,
    /// `pdf-<lang>`.
    Pdf(Language),
    /// `dashboard`.
    Dashboard,
}

impl AttachmentKind {
    /// Parses an attachment id.
    pub fn from_id(id: &str) -> Option<Self> {
        match id {
            "fhir" => Some(Self::Fhir),
            "dashboard" => Some(Self::Dashboard),
            _ => {
                let tag = id.strip_prefix("pdf-")?;
                Language::ALL
                    .into_iter()
                    .find(|l| l.tag() == tag)
                    .map(Self::Pdf)
            }
        }
    }

    /// The stable id.
    pub fn id(self) -> String {
        match self {
            Self::Fhir => "fhir".into(),
            Self::Pdf(l) => format!("pdf-{}", l.tag()),
            Self::Dashboard => "dashboard".into(),
        }
    }

    /// `contentType` in the HUB metadata.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Fhir => fhir::CONTENT_TYPE,
            Self::Pdf(_) => pdf::CONTENT_TYPE,
            Self::Dashboard => dashboard::CONTENT_TYPE,
        }
    }

    /// The HTTP Content-Type of the served bytes.
    pub fn http_content_type(self) -> &'static str {
        match self {
            Self::Dashboard => "text/html; charset=utf-8",
            other => other.content_type(),
        }
    }

    /// Every attachment of a session, in the order the HUB lists them.
    pub fn all_for(ctx: &SessionContext) -> Vec<Self> {
        let mut out = vec![Self::Fhir];
        out.extend(ctx.languages.iter().map(|&l| Self::Pdf(l)));
        out.push(Self::Dashboard);
        out
    }

    /// Renders the attachment's bytes. CPU-bound (a few ms): run it off the async runtime.
    pub fn render(self, data: &SessionData, options: &OutputOptions) -> Vec<u8> {
        let (ctx, readings, symptoms) = (&data.context, &data.readings, &data.symptoms);
        let findings = || {
            let rules = options.triage.rules_for(&ctx.carepath.id, &ctx.patient_id);
            Findings::of(readings, symptoms, rules.as_ref(), options.time_zone)
        };
        match self {
            Self::Fhir => fhir::export_bundle(ctx, readings, symptoms, &options.fhir).to_bytes(),
            Self::Pdf(l) => {
                pdf::render_report(ctx, readings, symptoms, l, &options.ranges, &findings())
            }
            Self::Dashboard => {
                let lang = ctx.languages.first().copied().unwrap_or(Language::En);
                let (ranges, found) = (&options.ranges, &findings());
                dashboard::render_dashboard(ctx, readings, symptoms, lang, ranges, found)
                    .into_bytes()
            }
        }
    }
}

/// Digest facts of a body: what Content-MD5, ETag and Content-Length say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// Base64 of the raw 16-byte MD5 digest.
    pub content_md5: String,
    /// `"<hex md5>"`, a strong validator.
    pub etag: String,
    /// Bytes.
    pub content_length: u64,
}

impl Digests {
    /// The digests of `body`.
    pub fn of(body: &[u8]) -> Self {
        let md5 = Md5::digest(body);
        Digests {
            content_md5: STANDARD.encode(md5),
            etag: format!("\"{}\"", hex::encode(md5)),
            content_length: body.len() as u64,
        }
    }
}

/// One attachment as the HUB's status PUT carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Stable id.
    pub id: String,
    /// `application/fhir+json`, `application/pdf` or `x-tm-dashboard`.
    pub content_type: String,
    /// Base64 MD5 (files only; a dashboard is a page, not a file).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "contentMD5")]
    pub content_md5: Option<String>,
    /// Bytes (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    /// When the data last changed, RFC 3339 with milliseconds (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// The ETag the server answers with (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The PDF's language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// The signed download URI.
    pub uri: String,
}

/// The metadata of every attachment of `data`, with URIs under `public_url` signed for the
/// session's prescriber until `expires`.
pub fn describe(
    data: &SessionData,
    options: &OutputOptions,
    signer: &UriSigner,
    public_url: &str,
    expires: DateTime<Utc>,
) -> Vec<Attachment> {
    let ctx = &data.context;
    AttachmentKind::all_for(ctx)
        .into_iter()
        .map(|kind| {
            let id = kind.id();
            let token = signer.sign(&ctx.telemonitoring_id, &id, &ctx.prescriber_id, expires);
            let uri = format!(
                "{}{}?token={token}",
                public_url.trim_end_matches('/'),
                routes::path_of(&ctx.telemonitoring_id, &id)
            );
            let file = kind != AttachmentKind::Dashboard;
            let digests = file.then(|| Digests::of(&kind.render(data, options)));
            Attachment {
                id,
                content_type: kind.content_type().into(),
                content_md5: digests.as_ref().map(|d| d.content_md5.clone()),
                content_length: digests.as_ref().map(|d| d.content_length),
                // The HUB takes only id, contentType, uri and headers for a dashboard.
                last_modified: file.then(|| {
                    data.last_modified
                        .to_rfc3339_opts(SecondsFormat::Millis, true)
                }),
                etag: digests.map(|d| d.etag),
                content_language: match kind {
                    AttachmentKind::Pdf(l) => Some(l.tag().into()),
                    _ => None,
                },
                uri,
            }
        })
        .collect()
}
