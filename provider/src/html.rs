//! HTML escaping for the server-rendered pages (enrollment page, operations dashboard, the
//! session dashboard attachment): every value that did not come from the page's own template
//! goes through [`escape`], which makes it safe both as element content and inside a quoted
//! attribute.

/// Escapes `s` for HTML content and double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn markup_and_quotes_are_escaped_and_the_rest_kept() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>R&D</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;R&amp;D&lt;/a&gt;"
        );
        assert_eq!(escape("Gewicht 82,5 kg – été"), "Gewicht 82,5 kg – été");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }
}
