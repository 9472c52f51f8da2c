//! The check-in page's markup, in the patient's language: pure functions from what to show to
//! HTML. Large text and buttons (each severity a full-width tap target, two to a row on a
//! phone), no script, nothing loaded from elsewhere; a radio group per symptom, so a
//! symptom left unanswered is simply not sent.

use std::fmt::Write as _;

use crate::html::escape;
use crate::outputs::Language;
use crate::symptom::codes::{HEART_FAILURE_SYMPTOMS, Words};
use crate::symptom::{Severity, SymptomAnswer};

const TITLE: Words = Words::new(
    "How are you today?",
    "Hoe voelt u zich vandaag?",
    "Comment allez-vous aujourd'hui ?",
);
const INTRO: Words = Words::new(
    "For each complaint, tap how much you have had it since you last filled this in. \
     Skip what you are not sure about.",
    "Duid voor elke klacht aan hoeveel last u ervan had sinds u dit de vorige keer invulde. \
     Sla over wat u niet zeker weet.",
    "Pour chaque plainte, touchez à quel point vous l'avez eue depuis la dernière fois. \
     Passez ce dont vous n'êtes pas sûr.",
);
const NOT_URGENT: Words = Words::new(
    "This page is not for emergencies. If you feel very unwell, call your doctor or 112.",
    "Deze pagina is niet voor noodgevallen. Voelt u zich erg onwel, bel dan uw arts of 112.",
    "Cette page n'est pas faite pour les urgences. Si vous vous sentez très mal, appelez \
     votre médecin ou le 112.",
);
const SEND: Words = Words::new("Send", "Versturen", "Envoyer");
const THANKS: Words = Words::new(
    "Thank you. Your answers reached your care team at",
    "Bedankt. Uw antwoorden zijn bij uw zorgteam aangekomen om",
    "Merci. Vos réponses sont arrivées chez votre équipe de soins à",
);
const ALREADY: Words = Words::new(
    "These answers had already arrived; nothing was sent twice.",
    "Deze antwoorden waren al aangekomen; er is niets dubbel verstuurd.",
    "Ces réponses étaient déjà arrivées ; rien n'a été envoyé deux fois.",
);
const SEVERE: Words = Words::new(
    "You reported a severe complaint. Your care team will look at it. If it cannot wait, \
     call your doctor or 112.",
    "U meldde een ernstige klacht. Uw zorgteam bekijkt die. Kan het niet wachten, bel dan \
     uw arts of 112.",
    "Vous avez signalé une plainte sévère. Votre équipe de soins va l'examiner. Si cela ne \
     peut pas attendre, appelez votre médecin ou le 112.",
);
const AGAIN: Words = Words::new("Fill in again", "Opnieuw invullen", "Remplir à nouveau");
const ANSWER_ONE: Words = Words::new(
    "Please answer at least one question.",
    "Beantwoord minstens één vraag.",
    "Veuillez répondre à au moins une question.",
);

/// The page's languages, as the switch at its top lists them.
const SWITCH: [(Language, &str); 3] = [
    (Language::Nl, "Nederlands"),
    (Language::Fr, "Français"),
    (Language::En, "English"),
];

const STYLE: &str = "body{font-family:sans-serif;font-size:20px;line-height:1.4;margin:0 auto;\
padding:12px;max-width:40em;color:#111;background:#fff}h1{font-size:1.5em;margin:.3em 0}\
fieldset{border:0;border-top:1px solid #bbb;margin:0;padding:14px 0}\
legend{font-size:1.1em;font-weight:bold;padding:0}\
.choices{display:grid;grid-template-columns:repeat(2,1fr);gap:8px;margin-top:8px}\
@media (min-width:600px){.choices{grid-template-columns:repeat(4,1fr)}}\
.choices label{display:block;position:relative}\
.choices input{position:absolute;opacity:0;width:1px;height:1px}\
.choices span{display:block;text-align:center;padding:14px 4px;border:2px solid #555;\
border-radius:10px;min-height:1.4em}\
.choices input:checked+span{background:#174a85;color:#fff;border-color:#174a85}\
.choices input:focus-visible+span{outline:4px solid #b35900;outline-offset:2px}\
button,.button{display:block;box-sizing:border-box;font-size:1.2em;width:100%;padding:18px;\
border-radius:10px;border:0;background:#174a85;color:#fff;margin:18px 0;text-align:center;\
text-decoration:none}.note{background:#fff1dc;padding:10px 12px;border-radius:8px}\
.error{background:#fde2e2;color:#7a0c0c;padding:10px 12px;border-radius:8px}\
nav a{margin-right:14px;color:#174a85}ul{padding-left:1.2em}";

fn page(lang: Language, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style>\
         </head><body>{body}</body></html>",
        lang.tag(),
        escape(lang.pick(TITLE))
    )
}

/// What the form carries besides the answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormState {
    /// The check-in's id (random, per page load): a form sent twice stores its answers once.
    pub submission: String,
    /// When the page was served, in milliseconds since the epoch.
    pub opened_ms: i64,
    /// Answers to show selected again (after an error).
    pub selected: Vec<(&'static str, Severity)>,
    /// An error to show above the form.
    pub error: Option<&'static Words>,
}

/// The check-in form in `lang`.
pub fn form(lang: Language, state: &FormState) -> String {
    let mut body = String::from("<nav>");
    for (l, name) in SWITCH {
        if l != lang {
            let _ = write!(
                body,
                "<a href=\"?lang={}\" lang=\"{}\">{name}</a>",
                l.tag(),
                l.tag()
            );
        }
    }
    let _ = write!(
        body,
        "</nav><h1>{}</h1><p>{}</p><p class=\"note\">{}</p>",
        escape(lang.pick(TITLE)),
        escape(lang.pick(INTRO)),
        escape(lang.pick(NOT_URGENT))
    );
    if let Some(error) = state.error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\" id=\"error\">{}</p>",
            escape(lang.pick(*error))
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" id=\"checkin\">\
         <input type=\"hidden\" name=\"submission\" value=\"{}\">\
         <input type=\"hidden\" name=\"opened\" value=\"{}\">\
         <input type=\"hidden\" name=\"lang\" value=\"{}\">",
        escape(&state.submission),
        state.opened_ms,
        lang.tag()
    );
    for s in &HEART_FAILURE_SYMPTOMS {
        let _ = write!(
            body,
            "<fieldset id=\"q-{code}\"><legend>{}</legend><div class=\"choices\">",
            escape(lang.pick(s.words)),
            code = s.code
        );
        for severity in Severity::ALL {
            let checked = state.selected.contains(&(s.code, severity));
            let _ = write!(
                body,
                "<label><input type=\"radio\" name=\"s_{}\" value=\"{}\"{}><span>{}</span></label>",
                s.code,
                severity.code(),
                if checked { " checked" } else { "" },
                escape(lang.pick(severity.words()))
            );
        }
        body.push_str("</div></fieldset>");
    }
    let _ = write!(
        body,
        "<button type=\"submit\">{}</button></form>",
        escape(lang.pick(SEND))
    );
    page(lang, &body)
}

/// No answer was given.
pub const NO_ANSWER: &Words = &ANSWER_ONE;

/// After sending: what arrived, at what time (`HH:MM`, the patient's time), and what to do
/// about a severe complaint; `inserted` 0 means the same form came again.
pub fn thanks(lang: Language, answers: &[SymptomAnswer], inserted: usize, at: &str) -> String {
    let mut body = format!("<h1>{}</h1>", escape(lang.pick(TITLE)));
    if inserted == 0 {
        let _ = write!(body, "<p id=\"done\">{}</p>", escape(lang.pick(ALREADY)));
    } else {
        let _ = write!(
            body,
            "<p id=\"done\">{} {}.</p>",
            escape(lang.pick(THANKS)),
            escape(at)
        );
    }
    body.push_str("<ul id=\"answers\">");
    for a in answers {
        let _ = write!(
            body,
            "<li>{}: {}</li>",
            escape(lang.pick(a.symptom.words)),
            escape(lang.pick(a.severity.words()))
        );
    }
    body.push_str("</ul>");
    if answers.iter().any(|a| a.severity == Severity::Severe) {
        let _ = write!(
            body,
            "<p class=\"note\" id=\"severe\">{}</p>",
            escape(lang.pick(SEVERE))
        );
    }
    let _ = write!(
        body,
        "<a class=\"button\" href=\"?lang={}\">{}</a>",
        lang.tag(),
        escape(lang.pick(AGAIN))
    );
    page(lang, &body)
}

/// A link that does not work (unknown, revoked, or its monitoring ended), in every language:
/// whose it was is not known.
pub fn gone() -> String {
    let body = "<h1 lang=\"nl\">Deze link werkt niet meer</h1>\
        <p lang=\"nl\">Vraag uw verpleegkundige om een nieuwe.</p>\
        <h1 lang=\"fr\">Ce lien ne fonctionne plus</h1>\
        <p lang=\"fr\">Demandez-en un nouveau à votre infirmière ou infirmier.</p>\
        <h1 lang=\"en\">This link no longer works</h1>\
        <p lang=\"en\">Ask your nurse for a new one.</p>";
    page(Language::En, body)
}

/// A request the page did not send (a form from elsewhere, a malformed field).
pub fn refused(lang: Language, why: &str) -> String {
    page(
        lang,
        &format!("<p class=\"error\" role=\"alert\">{}</p>", escape(why)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_asks_every_symptom_with_every_severity_in_the_language() {
        let state = FormState {
            submission: "ab".repeat(16),
            opened_ms: 1,
            selected: vec![("84229001", Severity::Mild)],
            error: Some(NO_ANSWER),
        };
        let html = form(Language::Nl, &state);
        assert!(html.starts_with("<!doctype html><html lang=\"nl\">"));
        assert_eq!(html.matches("<fieldset").count(), 15);
        assert_eq!(html.matches("type=\"radio\"").count(), 60);
        assert!(html.contains("Kriebelhoest"));
        assert!(html.contains("Beantwoord minstens één vraag."));
        assert!(html.contains("name=\"s_84229001\" value=\"255604002\" checked"));
        assert_eq!(html.matches(" checked").count(), 1);
        assert!(html.contains("href=\"?lang=fr\""));
        assert!(!html.contains("href=\"?lang=nl\""));
    }
}
