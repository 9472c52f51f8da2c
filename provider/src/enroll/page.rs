//! The nurse's enrollment page `GET /enroll/{token}` (server-rendered, one screen per step on
//! a phone, in the phone's language: [`super::view`]), reached only through the unguessable
//! URL answered to the Portal, for one session:
//!
//! - while the session waits for enrollment: **step 1**, the carepath (heart failure by
//!   default), then (`?carepath=...`) **step 2**, the gateway's claim code, typed or scanned
//!   from the box's QR code, posted to `/enroll/{token}/claim` ([`super::claim`]). Below step
//!   1, a technician can still issue a one-time code for `tm-gateway enroll`
//!   (`POST /enroll/{token}`, [`issue`]);
//! - once the session has its gateway (accepted or in progress): steps 3 to 5, pairing the
//!   devices, a first measurement and the summary, which the setup script keeps up to date
//!   ([`super::setup`]), and the patient's check-in handover ([`super::checkin`]);
//! - once the session ended: that it is closed.
//!
//! Nothing of the patient is shown but the pseudonymous patient id.

use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::view::{self, Here};
use super::words::{self, PageLanguage};
use super::{checkin, setup_page};
use crate::html::escape;
use crate::hub::contract::{CAREPATHS, Carepath, KnownCarepath, Status};
use crate::portal::state::AppState;
use crate::store::enrollment::{EnrollmentPage, IssuedCode};

/// `?carepath=` (step 2) and `?lang=`.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    /// The carepath chosen in step 1.
    pub carepath: Option<String>,
    /// The page's language.
    pub lang: Option<String>,
}

/// The session of `token`, or the answer to give (404 unknown, 503 store failure).
pub async fn lookup(
    app: &AppState,
    token: &str,
    lang: PageLanguage,
) -> Result<EnrollmentPage, Response> {
    match app.store.enrollment_page(token.to_owned()).await {
        Ok(Some(page)) => Ok(page),
        Ok(None) => Err(view::message(
            StatusCode::NOT_FOUND,
            lang,
            words::LINK_INVALID,
            "",
        )),
        Err(e) => {
            tracing::error!(error = %e, "store failure");
            Err(view::message(
                StatusCode::SERVICE_UNAVAILABLE,
                lang,
                words::INTERNAL,
                "",
            ))
        }
    }
}

/// The carepath of `id`, if the Portal contract knows it.
pub fn known_carepath(id: &str) -> Option<&'static KnownCarepath> {
    CAREPATHS.iter().find(|c| c.id == id)
}

/// A carepath `<select>` named `carepath` with `id`, `selected` chosen (else the first).
fn carepath_select(id: &str, selected: Option<&str>) -> String {
    let mut html = format!("<select id=\"{id}\" name=\"carepath\">");
    for (i, c) in CAREPATHS.iter().enumerate() {
        let chosen = selected.map_or(i == 0, |s| s == c.id);
        let _ = write!(
            html,
            "<option value=\"{}\"{}>{}</option>",
            escape(c.id),
            if chosen { " selected" } else { "" },
            escape(c.label)
        );
    }
    html.push_str("</select>");
    html
}

/// Step 1, and the technician's code below it.
fn carepath_step(lang: PageLanguage, token: &str, patient: &str) -> String {
    let here = Here::page(token);
    let tag = crate::http::language::Tagged::tag(lang);
    format!(
        "{switch}{patient}<section data-step=\"carepath\"><h2>{title}</h2>\
         <form method=\"get\" action=\"{page}\" id=\"carepath-form\">\
         <label for=\"carepath\">{label}</label>{select}\
         <input type=\"hidden\" name=\"lang\" value=\"{tag}\">\
         <button type=\"submit\" id=\"carepath-next\">{next}</button></form></section>\
         <details id=\"technician\"><summary>{technician}</summary>\
         <form method=\"post\" action=\"{page}\" id=\"technician-form\">\
         <label for=\"technician-carepath\">{label}</label>{technician_select}\
         <button type=\"submit\" class=\"secondary\">{issue}</button></form></details>",
        switch = view::switch(lang, &here, ""),
        patient = view::patient(lang, patient),
        title = escape(lang.pick(words::STEP_CAREPATH)),
        page = here.to_page,
        label = escape(lang.pick(words::CAREPATH)),
        select = carepath_select("carepath", None),
        next = escape(lang.pick(words::NEXT)),
        technician = escape(lang.pick(words::TECHNICIAN)),
        technician_select = carepath_select("technician-carepath", None),
        issue = escape(lang.pick(words::ISSUE_CODE)),
    )
}

/// What step 2 shows besides its form: the code as typed and why it was refused.
#[derive(Debug, Default)]
pub struct ClaimForm<'a> {
    /// The code to show in the field again.
    pub typed: &'a str,
    /// The refusal, in plain words.
    pub error: Option<String>,
}

/// Step 2: the claim code, for `carepath`, rendered at `here`.
pub fn connect_step(
    lang: PageLanguage,
    here: &Here,
    patient: &str,
    carepath: &KnownCarepath,
    form: &ClaimForm<'_>,
) -> String {
    let tag = crate::http::language::Tagged::tag(lang);
    let (error, invalid) = match &form.error {
        Some(e) => (
            format!(
                "<p class=\"error\" id=\"claim-error\" role=\"alert\">{}</p>",
                escape(e)
            ),
            " aria-invalid=\"true\" aria-describedby=\"claim-code-hint claim-error\"",
        ),
        None => (String::new(), " aria-describedby=\"claim-code-hint\""),
    };
    let query = format!("carepath={}&amp;", escape(&urlencode(carepath.id)));
    format!(
        "{switch}{patient}<section data-step=\"connect\"><h2>{title}</h2><p>{help}</p>\
         <p>{carepath_label}: <strong id=\"chosen-carepath\">{carepath}</strong></p>\
         <form method=\"post\" action=\"{claim}\" id=\"claim-form\">\
         <input type=\"hidden\" name=\"carepath\" value=\"{carepath_id}\">\
         <input type=\"hidden\" name=\"lang\" value=\"{tag}\">\
         <label for=\"claim-code\">{code_label}</label>\
         <input id=\"claim-code\" name=\"code\" type=\"text\" value=\"{typed}\" required \
         maxlength=\"32\" autocapitalize=\"characters\" autocomplete=\"off\" autocorrect=\"off\" \
         spellcheck=\"false\" inputmode=\"text\" enterkeyhint=\"go\"{invalid}>\
         <p class=\"hint\" id=\"claim-code-hint\">{hint}</p>{error}\
         <button type=\"button\" id=\"scan\" class=\"secondary\" hidden \
         data-stop=\"{scan_stop}\">{scan}</button>\
         <video id=\"scan-video\" hidden playsinline muted aria-hidden=\"true\"></video>\
         <button type=\"submit\" id=\"claim-submit\">{connect}</button></form>\
         <p><a href=\"{page}?lang={tag}\" id=\"back\">{back}</a></p></section>\
         <script src=\"{script}\" defer></script>",
        switch = view::switch(lang, here, &query),
        patient = view::patient(lang, patient),
        title = escape(lang.pick(words::STEP_CONNECT)),
        help = escape(lang.pick(words::CONNECT_HELP)),
        carepath_label = escape(lang.pick(words::CAREPATH)),
        carepath = escape(carepath.label),
        claim = here.below("claim"),
        carepath_id = escape(carepath.id),
        code_label = escape(lang.pick(words::CODE)),
        typed = escape(form.typed),
        hint = escape(lang.pick(words::CODE_HINT)),
        scan_stop = escape(lang.pick(words::SCAN_STOP)),
        scan = escape(lang.pick(words::SCAN)),
        connect = escape(lang.pick(words::CONNECT)),
        page = here.to_page,
        back = escape(lang.pick(words::BACK)),
        script = here.script(),
    )
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `GET /enroll/{token}`.
pub async fn show(
    State(app): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = view::language(q.lang.as_deref(), &headers);
    let page = match lookup(&app, &token, lang).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let html = match page.status {
        Status::Requested => match q.carepath.as_deref().map(known_carepath) {
            Some(Some(carepath)) => connect_step(
                lang,
                &Here::page(&token),
                &page.patient_id,
                carepath,
                &ClaimForm::default(),
            ),
            Some(None) => {
                return view::message(StatusCode::BAD_REQUEST, lang, words::UNKNOWN_CAREPATH, "");
            }
            None => carepath_step(lang, &token, &page.patient_id),
        },
        status if checkin::live(status) => {
            let mut body = setup_page::page_body(&app, lang, &token, &page).await;
            match app
                .store
                .checkin_issued_at(page.telemonitoring_id.clone())
                .await
            {
                Ok(issued) => body.push_str(&checkin::section(&token, issued)),
                Err(e) => tracing::error!(error = %e, "store failure"),
            }
            body
        }
        status => format!(
            "{}<p id=\"closed\">{}</p>",
            view::patient(lang, &page.patient_id),
            escape(&lang.fill(words::CLOSED, status.as_str()))
        ),
    };
    view::respond(StatusCode::OK, view::frame(lang, &html))
}

/// The technician's form.
#[derive(Debug, Deserialize)]
pub struct IssueForm {
    /// The chosen carepath id.
    pub carepath: String,
}

/// `POST /enroll/{token}`: issues a one-time code for the chosen carepath (the technician's
/// `tm-gateway enroll --code`). English: a technician's screen.
#[tracing::instrument(name = "enroll", skip_all)]
pub async fn issue(
    State(app): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(f): Form<IssueForm>,
) -> Response {
    let lang = PageLanguage::En;
    if crate::http::access::cross_site(&headers) {
        return view::message(StatusCode::FORBIDDEN, lang, words::CROSS_SITE, "");
    }
    let (id, patient) = match lookup(&app, &token, lang).await {
        Err(r) => return r,
        Ok(EnrollmentPage {
            telemonitoring_id,
            patient_id,
            status: Status::Requested,
        }) => (telemonitoring_id, patient_id),
        Ok(_) => return view::message(StatusCode::CONFLICT, lang, words::NOT_WAITING, ""),
    };
    let Some(known) = known_carepath(&f.carepath) else {
        return view::message(StatusCode::BAD_REQUEST, lang, words::UNKNOWN_CAREPATH, "");
    };
    let carepath = Carepath {
        id: known.id.into(),
        version: known.version.into(),
    };
    let settings = &app.portal.enrollment;
    let ttl_ms = i64::try_from(settings.code_ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let per_hour = settings.codes_per_session_per_hour;
    let issued = app
        .store
        .issue_enrollment_code(id, carepath, ttl_ms, per_hour)
        .await;
    match issued {
        Ok(Ok(IssuedCode {
            code,
            expires_at_ms: expires_ms,
        })) => {
            let expires = chrono::DateTime::from_timestamp_millis(expires_ms)
                .map(|t| t.format("%H:%M UTC").to_string())
                .unwrap_or_default();
            let body = format!(
                "{}<p>Carepath: {}</p>\
                 <p>On the gateway run <code>tm-gateway enroll --provider URL --code CODE</code> \
                 with this one-time code (valid until {expires}):</p>\
                 <p class=\"code\" id=\"code\">{code}</p>",
                view::patient(lang, &patient),
                escape(known.label)
            );
            view::respond(StatusCode::OK, view::frame(lang, &body))
        }
        Ok(Err(why)) => view::respond(
            StatusCode::TOO_MANY_REQUESTS,
            view::frame(
                lang,
                &format!("<p class=\"error\">{}</p>", escape(&why.to_string())),
            ),
        ),
        Err(e) => {
            tracing::error!(error = %e, "store failure");
            view::message(StatusCode::INTERNAL_SERVER_ERROR, lang, words::INTERNAL, "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_two_labels_its_field_and_points_its_form_at_the_claim() {
        let carepath = &CAREPATHS[0];
        let html = connect_step(
            PageLanguage::Nl,
            &Here::page("abc"),
            "pat-1",
            carepath,
            &ClaimForm {
                typed: "<x>",
                error: Some("fout".into()),
            },
        );
        assert!(html.contains("<label for=\"claim-code\">"));
        assert!(html.contains("action=\"abc/claim\""));
        assert!(html.contains("value=\"&lt;x&gt;\""));
        assert!(html.contains("aria-invalid=\"true\""));
        assert!(html.contains("src=\"abc/../../assets/setup.js\""));
        let again = connect_step(
            PageLanguage::En,
            &Here::action("abc"),
            "pat-1",
            carepath,
            &ClaimForm::default(),
        );
        assert!(again.contains("action=\"../abc/claim\""));
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
