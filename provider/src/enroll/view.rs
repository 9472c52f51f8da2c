//! What every page of the nurse's enrollment and setup shares: the frame (the `lang`
//! attribute, a phone-sized layout, large controls), the language switch, the secure headers,
//! and how a page links to its neighbours.
//!
//! - **Headers.** Never cached, no referrer (the page token is in the URL), not framed; only
//!   the provider's own script (`/assets/setup.js`), inline style, and requests to the
//!   provider itself (`default-src 'none'; script-src 'self'; connect-src 'self'; ...`); the
//!   camera only for the page's own origin (the QR scan).
//! - **Links are relative.** The page lives at `/enroll/{token}` and its actions below it, so
//!   a path prefix in front of the provider is kept; [`Here`] says where the page being
//!   rendered lives, so a form re-shown after a refused claim still points at the right place.

use std::fmt::Write as _;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::words::{self, PageLanguage};
use crate::html::escape;
use crate::http::language::negotiate;
use crate::symptom::codes::Words;

/// The pages' Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
    style-src 'unsafe-inline'; img-src 'self' data:; media-src 'self' blob: mediastream:; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = "body{font-family:sans-serif;font-size:18px;line-height:1.4;margin:0 auto;\
padding:12px;max-width:36em;color:#111;background:#fff}h1{font-size:1.4em;margin:.3em 0}\
h2{font-size:1.15em;margin:1em 0 .4em}section{border-top:1px solid #bbb;padding:4px 0 12px}\
label{display:block;font-weight:bold;margin:.6em 0 .2em}\
input,select,button{font-size:1.1em;box-sizing:border-box;width:100%;padding:.55em;\
margin:.3em 0;border-radius:8px;border:2px solid #555}\
button{background:#174a85;color:#fff;border-color:#174a85;cursor:pointer}\
button.secondary{background:#fff;color:#174a85}\
button:focus-visible,input:focus-visible,select:focus-visible,a:focus-visible\
{outline:4px solid #b35900;outline-offset:2px}\
.code{font-size:2.2em;letter-spacing:.12em;font-family:monospace}\
.error{background:#fde2e2;color:#7a0c0c;padding:10px 12px;border-radius:8px}\
.ok{background:#e3f4e1;color:#12400f;padding:10px 12px;border-radius:8px}\
.hint{color:#444;font-size:.9em;margin:.1em 0}ul{list-style:none;padding:0}\
li.device{border:1px solid #bbb;border-radius:8px;padding:8px 10px;margin:8px 0}\
.number{font-size:2em;font-family:monospace;letter-spacing:.1em}\
nav a{margin-right:14px;color:#174a85}video{width:100%;max-height:50vh}\
details{margin-top:2em;border-top:1px solid #bbb;padding-top:8px}";

/// Where the page being rendered lives, for its relative links.
#[derive(Debug, Clone)]
pub struct Here {
    /// The path from the page's location to the enrollment page (`{token}` from
    /// `/enroll/{token}`, `../{token}` from `/enroll/{token}/claim`).
    pub to_page: String,
}

impl Here {
    /// Rendered at `/enroll/{token}`.
    pub fn page(token: &str) -> Self {
        Self::levels_below(token, 0)
    }

    /// Rendered at `/enroll/{token}/{action}`.
    pub fn action(token: &str) -> Self {
        Self::levels_below(token, 1)
    }

    /// Rendered (or redirecting) at a path `levels` segments below `/enroll/{token}`:
    /// `/enroll/{token}/setup/done` is 2.
    pub fn levels_below(token: &str, levels: usize) -> Self {
        Self {
            to_page: format!("{}{}", "../".repeat(levels), escape(token)),
        }
    }

    /// A path below the enrollment page (`claim`, `setup/state`).
    pub fn below(&self, rest: &str) -> String {
        format!("{}/{rest}", self.to_page)
    }

    /// The provider's setup script.
    pub fn script(&self) -> String {
        format!("{}/../../assets/setup.js", self.to_page)
    }
}

/// The page's language: `?lang=`, else the phone's `Accept-Language`, else English.
pub fn language(asked: Option<&str>, headers: &HeaderMap) -> PageLanguage {
    negotiate(
        &PageLanguage::ALL,
        &[asked],
        crate::http::language::accept_language(headers),
        PageLanguage::En,
    )
}

/// The language switch: a link to this page (with `query`, already escaped, e.g.
/// `carepath=...&amp;`) in every other language.
pub fn switch(lang: PageLanguage, here: &Here, query: &str) -> String {
    let mut html = format!(
        "<nav aria-label=\"{}\">",
        escape(lang.pick(words::LANGUAGE))
    );
    for other in PageLanguage::ALL.into_iter().filter(|l| *l != lang) {
        let tag = crate::http::language::Tagged::tag(other);
        let _ = write!(
            html,
            "<a href=\"{page}?{query}lang={tag}\" lang=\"{tag}\" hreflang=\"{tag}\">{}</a>",
            other.name(),
            page = here.to_page,
        );
    }
    html.push_str("</nav>");
    html
}

/// The frame around `body`, in `lang`.
pub fn frame(lang: PageLanguage, body: &str) -> String {
    let title = escape(lang.pick(words::TITLE));
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
         <style>{STYLE}</style></head><body><main><h1>{title}</h1>{body}</main></body></html>",
        crate::http::language::Tagged::tag(lang)
    )
}

/// An HTML answer with the pages' headers.
pub fn respond(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::HeaderName::from_static("permissions-policy"),
                "camera=(self)",
            ),
        ],
        html,
    )
        .into_response()
}

/// A page of one message (`words` in `lang`, with `{}` filled by `value`).
pub fn message(status: StatusCode, lang: PageLanguage, words: Words, value: &str) -> Response {
    let class = if status.is_success() { "ok" } else { "error" };
    let text = escape(&lang.fill(words, value));
    respond(
        status,
        frame(
            lang,
            &format!("<p class=\"{class}\" id=\"message\">{text}</p>"),
        ),
    )
}

/// The patient line: the pseudonymous id only.
pub fn patient(lang: PageLanguage, patient_id: &str) -> String {
    format!(
        "<p>{}: <strong id=\"patient\">{}</strong></p>",
        escape(lang.pick(words::PATIENT)),
        escape(patient_id)
    )
}
