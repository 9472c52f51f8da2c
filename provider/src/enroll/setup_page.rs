//! The markup of steps 3 to 5 of the nurse's page (`GET /enroll/{token}` once the session has
//! its gateway): a skeleton with the stable ids the setup script fills in
//! ([`super::setup`], [`super::assets`]) and tests find: `#setup` (its `data-state` and
//! `data-actions` URLs, the `data-step` reached, the script's words in `data-words`),
//! `section[data-step]`, `#gateway-state`, `#nearby`, `#pairings`, `#measurements`,
//! `#summary`, `#finish`, `#setup-done`.

use chrono::Utc;
use serde_json::json;

use super::setup_state;
use super::view::{self, Here};
use super::words::{self, PageLanguage};
use crate::html::escape;
use crate::portal::state::AppState;
use crate::store::enrollment::EnrollmentPage;

/// The skeleton of steps 3 to 5 on the page of `token` (`page` accepted or in progress).
pub async fn page_body(
    app: &AppState,
    lang: PageLanguage,
    token: &str,
    page: &EnrollmentPage,
) -> String {
    let here = Here::page(token);
    let view = match app
        .store
        .setup_view(page.telemonitoring_id.clone(), Utc::now())
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "store failure");
            None
        }
    };
    let step = setup_state::step_of(view.as_ref());
    // The script replaces this at its first poll; without it, a reload shows the news.
    let now = Utc::now();
    let gateway = match view
        .as_ref()
        .and_then(|v| Some((v, v.heartbeat.as_ref()?.0)))
    {
        Some((v, at)) if (now - at).num_seconds() < setup_state::ONLINE_WITHIN_S => {
            lang.fill(words::GATEWAY_ONLINE, v.gateway_id.as_str())
        }
        Some((v, _)) => lang.fill(words::GATEWAY_OFFLINE, v.gateway_id.as_str()),
        None => lang.pick(words::GATEWAY_WAITING).to_owned(),
    };
    let script_words: serde_json::Map<String, serde_json::Value> = words::SCRIPT_WORDS
        .iter()
        .map(|(k, w)| ((*k).to_owned(), json!(lang.pick(*w))))
        .collect();
    let tag = crate::http::language::Tagged::tag(lang);
    let done = step == setup_state::Step::Done;
    let h2 = |w| escape(lang.pick(w));
    format!(
        "{switch}{patient}\
         <div id=\"setup\" data-state=\"{state}?lang={tag}\" data-actions=\"{actions}\" \
         data-step=\"{step}\" data-words=\"{words}\">\
         <section data-step=\"connect\"><h2>{connect}</h2>\
         <p id=\"gateway-state\" role=\"status\" aria-live=\"polite\">{gateway}</p></section>\
         <section data-step=\"pair\"><h2>{pair}</h2><p>{pair_help}</p>\
         <p id=\"setup-message\" role=\"status\" aria-live=\"polite\"></p>\
         <ul id=\"nearby\"></ul><ul id=\"pairings\"></ul></section>\
         <section data-step=\"measure\"><h2>{measure}</h2><p>{measure_help}</p>\
         <ul id=\"measurements\" aria-live=\"polite\"></ul></section>\
         <section data-step=\"summary\"><h2>{summary}</h2><div id=\"summary\"></div>\
         <form method=\"post\" action=\"{finish_action}\" id=\"finish-form\"{finish_hidden}>\
         <button type=\"submit\" id=\"finish\">{finish}</button></form>\
         <p id=\"setup-done\" class=\"ok\"{done_hidden}>{finished}</p></section>\
         <noscript><p>{noscript}</p></noscript></div>\
         <script src=\"{script}\" defer></script>",
        switch = view::switch(lang, &here, ""),
        patient = view::patient(lang, &page.patient_id),
        state = here.below("setup/state"),
        actions = here.below("setup"),
        step = step.as_str(),
        words = escape(&serde_json::Value::Object(script_words).to_string()),
        connect = h2(words::STEP_CONNECT),
        gateway = escape(&gateway),
        pair = h2(words::STEP_PAIR),
        pair_help = h2(words::PAIR_HELP),
        measure = h2(words::STEP_MEASURE),
        measure_help = h2(words::MEASURE_HELP),
        summary = h2(words::STEP_SUMMARY),
        finish_action = here.below("setup/done"),
        finish_hidden = if done { " hidden" } else { "" },
        finish = h2(words::FINISH),
        done_hidden = if done { "" } else { " hidden" },
        finished = h2(words::FINISHED),
        noscript = h2(words::NEEDS_SCRIPT),
        script = here.script(),
    )
}
