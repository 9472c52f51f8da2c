//! The language a page is shown in, chosen once for every page that speaks several: the
//! check-in page ([`crate::checkin`]) and the nurse's enrollment and setup pages
//! ([`crate::enroll`]). A page offers a fixed set of languages, each named by its BCP 47 tag;
//! [`negotiate`] takes the first explicit choice the page has (`?lang=`, then a choice kept
//! with the page, such as the language a nurse gave a patient's link), else the browser's
//! `Accept-Language` preference by its q-values, else the page's fallback. Tags compare by
//! their primary subtag, case-insensitively (`nl-BE` is `nl`).

/// A language a page can be shown in.
pub trait Tagged: Copy + PartialEq + 'static {
    /// Its BCP 47 tag (`nl`, `fr`, `en`, `de`).
    fn tag(self) -> &'static str;
}

/// The primary subtag of `tag`, lower case.
fn primary(tag: &str) -> String {
    tag.split(['-', '_'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The language of `offered` that `tag` names.
pub fn find<L: Tagged>(offered: &[L], tag: &str) -> Option<L> {
    let wanted = primary(tag);
    offered.iter().copied().find(|l| l.tag() == wanted)
}

/// The `Accept-Language` ranges, most preferred first (a `q=0` range is left out; ties keep
/// the header's order).
fn preferences(header: &str) -> Vec<String> {
    let mut ranges: Vec<(String, f32)> = header
        .split(',')
        .filter_map(|part| {
            let mut fields = part.split(';');
            let range = fields.next()?.trim();
            let q = fields
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (!range.is_empty() && q > 0.0).then(|| (range.to_owned(), q))
        })
        .collect();
    ranges.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranges.into_iter().map(|(r, _)| r).collect()
}

/// The page's language: the first of `asked` that `offered` has, else the best
/// `accept_language` range it has, else `fallback`.
pub fn negotiate<L: Tagged>(
    offered: &[L],
    asked: &[Option<&str>],
    accept_language: Option<&str>,
    fallback: L,
) -> L {
    asked
        .iter()
        .flatten()
        .find_map(|tag| find(offered, tag))
        .or_else(|| {
            preferences(accept_language.unwrap_or_default())
                .iter()
                .find_map(|range| find(offered, range))
        })
        .unwrap_or(fallback)
}

/// The `Accept-Language` header of a request, if it is text.
pub fn accept_language(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum L {
        Nl,
        Fr,
        En,
    }

    impl Tagged for L {
        fn tag(self) -> &'static str {
            match self {
                L::Nl => "nl",
                L::Fr => "fr",
                L::En => "en",
            }
        }
    }

    const ALL: [L; 3] = [L::Nl, L::Fr, L::En];

    #[test]
    fn an_explicit_choice_wins_then_the_browser_then_the_fallback() {
        let accept = Some("de-DE,de;q=0.9,fr-BE;q=0.8,en;q=0.5");
        assert_eq!(negotiate(&ALL, &[Some("nl")], accept, L::En), L::Nl);
        assert_eq!(
            negotiate(&ALL, &[Some("xx"), Some("en")], accept, L::Nl),
            L::En
        );
        assert_eq!(negotiate(&ALL, &[None], accept, L::En), L::Fr);
        assert_eq!(negotiate(&ALL, &[], Some("NL-be"), L::En), L::Nl);
        assert_eq!(negotiate(&ALL, &[], Some("fr;q=0, en;q=0.1"), L::Nl), L::En);
        assert_eq!(negotiate(&ALL, &[], Some("fr;q=0.2, nl"), L::En), L::Nl);
        assert_eq!(negotiate(&ALL, &[], None, L::En), L::En);
        assert_eq!(negotiate(&ALL, &[], Some(",,;q=x"), L::Fr), L::Fr);
    }
}
