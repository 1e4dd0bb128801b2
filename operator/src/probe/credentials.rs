//! Origin credentials: what a ClusteredStream's `spec.health.originCredentials` Secret holds,
//! read strictly (pure, no I/O), and the one header it becomes.
//!
//! The Secret lives in the ClusteredStream's own namespace and carries the label
//! `cvs.dev/origin-credentials: "true"`, so a Secret made for something else (a database
//! password) can never be sent to an origin a tenant chooses. It holds one of:
//!
//! - `username` and `password` (type `kubernetes.io/basic-auth`, or `Opaque` with those keys):
//!   `Authorization: Basic base64(username:password)`;
//! - `bearer-token`: `Authorization: Bearer <token>`;
//! - `header-value`, with `headerName` set in the ClusteredStream (for example
//!   `X-MediaPackage-CDNIdentifier`): `<headerName>: <value>`.
//!
//! The value never leaves this module except as the header of a request to an allowed origin
//! host ([`super::destination::Destinations::credentials_for`]): [`OriginCredentials`] does not
//! print it, and errors name the Secret and the key, never the content.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use reqwest::header::{HeaderName, HeaderValue};

/// Label a Secret must carry to be used as origin credentials.
pub const SECRET_LABEL: &str = "cvs.dev/origin-credentials";
/// Longest value accepted for any key of the Secret.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// The header a probe sends to an allowed origin host. Its value is marked sensitive, so the
/// HTTP stack never logs it, and `Debug` prints only the header's name.
#[derive(Clone, PartialEq, Eq)]
pub struct OriginCredentials {
    pub name: HeaderName,
    pub value: HeaderValue,
    /// `Basic`, `Bearer` or `Header`, for messages.
    pub scheme: &'static str,
}

impl std::fmt::Debug for OriginCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OriginCredentials({}: {} <redacted>)",
            self.name, self.scheme
        )
    }
}

/// Why a Secret cannot be used. A configuration error: it is reported, and the instance is not
/// probed (its recorded verdict stands), never judged stale.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("Secret {0:?} does not exist in the ClusteredStream's namespace")]
    NotFound(String),
    #[error(
        "the operator may not read Secret {0:?} (grant it `get` on Secrets: the chart's originCredentials values)"
    )]
    Forbidden(String),
    #[error(
        "Secret {0:?} lacks the label {SECRET_LABEL}: \"true\" that marks it for use as origin credentials"
    )]
    NotMarked(String),
    #[error("Secret {secret:?} is malformed: {why}")]
    Malformed { secret: String, why: String },
    #[error("Secret {secret:?} could not be read: {why}")]
    Unreadable { secret: String, why: String },
}

impl CredentialsError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialsError::NotFound(_) => "SecretNotFound",
            CredentialsError::Forbidden(_) => "SecretForbidden",
            CredentialsError::NotMarked(_) => "SecretNotMarked",
            CredentialsError::Malformed { .. } => "SecretMalformed",
            CredentialsError::Unreadable { .. } => "SecretUnreadable",
        }
    }
}

fn value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
}

/// Reads the credentials from `secret` (named `name`), for `header_name` when the
/// ClusteredStream sets one. Strict: a Secret that is not marked, holds no recognised keys, holds
/// both a token and a user name, or holds a value that cannot be a header is refused, naming
/// the key and never its value.
pub fn parse_secret(
    name: &str,
    secret: &Secret,
    header_name: Option<&str>,
) -> Result<OriginCredentials, CredentialsError> {
    let marked = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SECRET_LABEL))
        .is_some_and(|v| v == "true");
    if !marked {
        return Err(CredentialsError::NotMarked(name.to_owned()));
    }
    let malformed = |why: String| CredentialsError::Malformed {
        secret: name.to_owned(),
        why,
    };
    // A value as text: UTF-8, bounded, without the trailing newline `--from-file` leaves, and
    // with no control character (a header cannot hold one, and CR/LF would split it).
    let text = |key: &str| -> Result<Option<String>, CredentialsError> {
        let Some(raw) = value(secret, key) else {
            return Ok(None);
        };
        if raw.len() > MAX_VALUE_BYTES {
            return Err(malformed(format!(
                "key {key:?} is longer than {MAX_VALUE_BYTES} bytes"
            )));
        }
        let s = std::str::from_utf8(raw)
            .map_err(|_| malformed(format!("key {key:?} is not UTF-8 text")))?;
        let s = s.strip_suffix('\n').unwrap_or(s);
        let s = s.strip_suffix('\r').unwrap_or(s);
        if s.chars().any(char::is_control) {
            return Err(malformed(format!("key {key:?} holds a control character")));
        }
        Ok(Some(s.to_owned()))
    };
    let sensitive = |v: String, key: &str| -> Result<HeaderValue, CredentialsError> {
        let mut v = HeaderValue::from_str(&v)
            .map_err(|_| malformed(format!("key {key:?} cannot be sent in a header")))?;
        v.set_sensitive(true);
        Ok(v)
    };

    if let Some(header) = header_name {
        let name = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| malformed(format!("headerName {header:?} is not a header name")))?;
        let Some(v) = text("header-value")? else {
            return Err(malformed(
                "headerName is set, so the key \"header-value\" is required".into(),
            ));
        };
        if v.is_empty() {
            return Err(malformed("key \"header-value\" is empty".into()));
        }
        return Ok(OriginCredentials {
            name,
            value: sensitive(v, "header-value")?,
            scheme: "Header",
        });
    }

    let token = text("bearer-token")?;
    let user = text("username")?;
    let password = text("password")?;
    match (token, user, password) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(malformed(
            "holds both \"bearer-token\" and \"username\"/\"password\"; keep one kind".into(),
        )),
        (Some(token), None, None) => {
            if token.is_empty() || token.contains(char::is_whitespace) {
                return Err(malformed(
                    "key \"bearer-token\" is empty or contains white space".into(),
                ));
            }
            Ok(OriginCredentials {
                name: reqwest::header::AUTHORIZATION,
                value: sensitive(format!("Bearer {token}"), "bearer-token")?,
                scheme: "Bearer",
            })
        }
        (None, Some(user), password) => {
            if user.is_empty() || user.contains(':') {
                return Err(malformed(
                    "key \"username\" is empty or contains ':' (RFC 7617)".into(),
                ));
            }
            let pair = format!("{user}:{}", password.unwrap_or_default());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            Ok(OriginCredentials {
                name: reqwest::header::AUTHORIZATION,
                value: sensitive(format!("Basic {encoded}"), "username")?,
                scheme: "Basic",
            })
        }
        (None, None, Some(_)) => Err(malformed("key \"password\" without \"username\"".into())),
        (None, None, None) => Err(malformed(
            "holds none of \"username\"/\"password\" (kubernetes.io/basic-auth), \"bearer-token\", \
             or \"header-value\" with headerName"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(marked: bool, data: &[(&str, &[u8])]) -> Secret {
        let mut s = Secret::default();
        if marked {
            s.metadata.labels = Some(BTreeMap::from([(SECRET_LABEL.into(), "true".into())]));
        }
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        );
        s
    }

    #[test]
    fn basic_auth_becomes_an_authorization_header() {
        let s = secret(
            true,
            &[("username", b"alice"), ("password", b"S3cret:pass\n")],
        );
        let c = parse_secret("auth", &s, None).unwrap();
        assert_eq!(c.name, reqwest::header::AUTHORIZATION);
        // base64("alice:S3cret:pass"): a colon in the password is fine, the newline is not kept.
        assert_eq!(c.value, "Basic YWxpY2U6UzNjcmV0OnBhc3M=");
        assert!(c.value.is_sensitive());
        let no_password = secret(true, &[("username", b"alice")]);
        assert_eq!(
            parse_secret("auth", &no_password, None).unwrap().value,
            "Basic YWxpY2U6"
        );
    }

    #[test]
    fn a_bearer_token_and_a_custom_header() {
        let s = secret(true, &[("bearer-token", b"t0ken.abc")]);
        let c = parse_secret("auth", &s, None).unwrap();
        assert_eq!(c.value, "Bearer t0ken.abc");
        assert_eq!(c.scheme, "Bearer");
        let s = secret(true, &[("header-value", b"cdn-id-42")]);
        let c = parse_secret("auth", &s, Some("X-MediaPackage-CDNIdentifier")).unwrap();
        assert_eq!(c.name.as_str(), "x-mediapackage-cdnidentifier");
        assert_eq!(c.value, "cdn-id-42");
    }

    #[test]
    fn malformed_secrets_are_refused_without_their_content() {
        let cases: Vec<(Secret, Option<&str>, &str)> = vec![
            (
                secret(false, &[("bearer-token", b"SECRETVALUE")]),
                None,
                "SecretNotMarked",
            ),
            (secret(true, &[]), None, "SecretMalformed"),
            (
                secret(true, &[("password", b"SECRETVALUE")]),
                None,
                "SecretMalformed",
            ),
            (
                secret(
                    true,
                    &[("bearer-token", b"SECRETVALUE"), ("username", b"a")],
                ),
                None,
                "SecretMalformed",
            ),
            (
                secret(true, &[("bearer-token", b"SECRET VALUE")]),
                None,
                "SecretMalformed",
            ),
            (
                secret(true, &[("bearer-token", b"")]),
                None,
                "SecretMalformed",
            ),
            (
                secret(true, &[("username", b"a:b"), ("password", b"SECRETVALUE")]),
                None,
                "SecretMalformed",
            ),
            (
                secret(
                    true,
                    &[("username", b"a"), ("password", b"SECRET\r\nX-Evil: 1")],
                ),
                None,
                "SecretMalformed",
            ),
            (
                secret(
                    true,
                    &[("username", b"\xff\xfe"), ("password", b"SECRETVALUE")],
                ),
                None,
                "SecretMalformed",
            ),
            (
                secret(true, &[("bearer-token", b"SECRETVALUE")]),
                Some("X-Auth"),
                "SecretMalformed",
            ),
            (
                secret(true, &[("header-value", b"SECRETVALUE")]),
                Some("Bad Header"),
                "SecretMalformed",
            ),
            (
                secret(
                    true,
                    &[("bearer-token", "x".repeat(MAX_VALUE_BYTES + 1).as_bytes())],
                ),
                None,
                "SecretMalformed",
            ),
        ];
        for (s, header, reason) in cases {
            let e = parse_secret("origin-auth", &s, header).unwrap_err();
            assert_eq!(e.reason(), reason, "{e}");
            let text = e.to_string();
            assert!(text.contains("\"origin-auth\""), "{text}");
            assert!(!text.contains("SECRET"), "{text}");
        }
    }

    #[test]
    fn debug_never_prints_the_value() {
        let s = secret(true, &[("bearer-token", b"SECRETVALUE")]);
        let c = parse_secret("auth", &s, None).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("SECRETVALUE"), "{printed}");
        assert!(printed.contains("authorization"), "{printed}");
    }
}
