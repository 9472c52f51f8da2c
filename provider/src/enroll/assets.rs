//! `GET /assets/setup.js`: the nurse's setup script ([`super::setup`]), compiled into the
//! binary, so the pages' `script-src 'self'` loads nothing but it.

use axum::http::header;
use axum::response::IntoResponse;

/// The script's route.
pub const SCRIPT_ROUTE: &str = "/assets/setup.js";

/// The script.
pub const SCRIPT: &str = include_str!("setup.js");

/// `GET /assets/setup.js`.
pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCRIPT,
    )
}
