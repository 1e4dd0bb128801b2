//! Redaction of URLs before they leave the probe (status, conditions, Events, logs, metric
//! labels, SNS bodies). Origins put secrets in user info (`http://alice:pw@host/`) and in query
//! strings (`?token=...&sig=...`): user info is dropped, query parameter names are kept and
//! their values replaced, the fragment is dropped. The controllers call the same functions.

use reqwest::Url;

/// What replaces a query parameter's value.
pub const REDACTED: &str = "REDACTED";

/// `url` without user info, with every query value replaced by [`REDACTED`] (names kept) and
/// without fragment. Text that does not parse as a URL is cut at its first `?` or `#`, and
/// anything before an `@` in its authority is dropped.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => redact_url(&u),
        Err(_) => redact_unparsed(url),
    }
}

/// [`redact`] for a parsed URL.
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    let query = u.query().map(redact_query);
    u.set_query(None);
    let mut out = u.to_string();
    if let Some(q) = query {
        out.push('?');
        out.push_str(&q);
    }
    out
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => format!("{name}={REDACTED}"),
            None => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn redact_unparsed(text: &str) -> String {
    let (base, query) = match text.split_once('?') {
        Some((b, q)) => (b, Some(q.split('#').next().unwrap_or(""))),
        None => (text.split('#').next().unwrap_or(""), None),
    };
    // Drop user info: whatever sits between "//" and an "@" before the path.
    let base = match base.find("//") {
        Some(i) => {
            let (scheme, rest) = base.split_at(i + 2);
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}{}", &rest[at + 1..]),
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    match query {
        Some(q) => format!("{base}?{}", redact_query(q)),
        None => base,
    }
}

/// Redacts every `http://` or `https://` URL inside free text (error messages quote them).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = ["http://", "https://"]
            .iter()
            .filter_map(|p| rest.find(p))
            .min();
        let Some(start) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '<' | '>' | ','))
            .unwrap_or(tail.len());
        out.push_str(&redact(&tail[..end]));
        rest = &tail[end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_and_query_values_are_dropped_names_kept() {
        assert_eq!(
            redact(
                "http://alice:S3cretPass@origin.example:8080/live/master.m3u8?token=abc&sig=xyz#t=3"
            ),
            "http://origin.example:8080/live/master.m3u8?token=REDACTED&sig=REDACTED"
        );
        assert_eq!(
            redact("https://o.example/v.m3u8?flag&a="),
            "https://o.example/v.m3u8?flag&a=REDACTED"
        );
        assert_eq!(
            redact("https://o.example/v.m3u8"),
            "https://o.example/v.m3u8"
        );
        assert_eq!(redact("https://bob@o.example/"), "https://o.example/");
    }

    #[test]
    fn text_that_is_not_a_url_is_redacted_too() {
        assert_eq!(
            redact("http://u:p@[bad/x.m3u8?token=1"),
            "http://[bad/x.m3u8?token=REDACTED"
        );
        assert_eq!(redact("x.m3u8?session=9"), "x.m3u8?session=REDACTED");
    }

    #[test]
    fn urls_inside_messages_are_redacted() {
        assert_eq!(
            redact_text(
                "error sending request for url (http://a:b@h/x.m3u8?token=s3cret): refused; see https://h/y?k=v, done"
            ),
            "error sending request for url (http://h/x.m3u8?token=REDACTED): refused; see https://h/y?k=REDACTED, done"
        );
        assert_eq!(redact_text("no urls here"), "no urls here");
    }
}
