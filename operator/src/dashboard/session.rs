//! Dashboard sessions: who signed in (as the API server's TokenReview said), their CSRF token,
//! and when the session ends. Pure: the clock and the random bytes come from the caller.
//!
//! The bearer token itself is not kept: a session holds the reviewed identity (user, uid,
//! groups, extra), which is what a SubjectAccessReview needs. A session ends after
//! [`IDLE_LIMIT`] without a request, or when the token it was opened with expires (its `exp`
//! claim, read after the API server accepted the token), whichever comes first.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A session unused for this long is forgotten.
pub const IDLE_LIMIT: Duration = Duration::from_secs(8 * 3600);
/// Most sessions held at once; a sign-in beyond it (after expired sessions are dropped) is
/// refused rather than evicting someone who is signed in.
pub const MAX_SESSIONS: usize = 10_000;
/// Name of the session cookie.
pub const COOKIE: &str = "cvs_session";

/// Who a session belongs to, as TokenReview reported it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Identity {
    pub user: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// One signed-in person.
#[derive(Clone, Debug)]
pub struct Session {
    pub identity: Identity,
    /// Sent back in `X-CSRF-Token` with every action.
    pub csrf: String,
    last_seen: Instant,
    /// When the token the session was opened with expires, if it said.
    token_expires: Option<Instant>,
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("too many dashboard sessions are open ({0}); try again later")]
    Full(usize),
    #[error("the token has already expired")]
    Expired,
}

/// Every session, by its cookie value.
#[derive(Debug)]
pub struct Sessions {
    map: HashMap<String, Session>,
    max: usize,
    idle: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(MAX_SESSIONS, IDLE_LIMIT)
    }
}

impl Sessions {
    pub fn new(max: usize, idle: Duration) -> Self {
        Self {
            map: HashMap::new(),
            max,
            idle,
        }
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_seen) < self.idle
            && s.token_expires.is_none_or(|t| now < t)
    }

    /// Opens a session for `identity` under the cookie value `id` with the CSRF token `csrf`
    /// (both random, from the caller). `token_lifetime` is how long the token has left.
    pub fn open(
        &mut self,
        id: String,
        csrf: String,
        identity: Identity,
        token_lifetime: Option<Duration>,
        now: Instant,
    ) -> Result<&Session, SessionError> {
        if token_lifetime.is_some_and(|d| d.is_zero()) {
            return Err(SessionError::Expired);
        }
        if self.map.len() >= self.max {
            self.sweep(now);
            if self.map.len() >= self.max {
                return Err(SessionError::Full(self.max));
            }
        }
        let session = Session {
            identity,
            csrf,
            last_seen: now,
            token_expires: token_lifetime.and_then(|d| now.checked_add(d)),
        };
        Ok(self.map.entry(id).insert_entry(session).into_mut())
    }

    /// The live session under cookie value `id`, marked as used now; an expired one is dropped.
    pub fn touch(&mut self, id: &str, now: Instant) -> Option<Session> {
        let alive = self.alive(self.map.get(id)?, now);
        if !alive {
            self.map.remove(id);
            return None;
        }
        let s = self.map.get_mut(id)?;
        s.last_seen = now;
        Some(s.clone())
    }

    /// Forgets a session (sign-out).
    pub fn close(&mut self, id: &str) -> bool {
        self.map.remove(id).is_some()
    }

    /// Drops every expired session.
    pub fn sweep(&mut self, now: Instant) {
        let idle = self.idle;
        self.map.retain(|_, s| {
            now.saturating_duration_since(s.last_seen) < idle
                && s.token_expires.is_none_or(|t| now < t)
        });
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Whether the CSRF token a request carries is the session's, compared in constant time.
pub fn csrf_matches(session: &Session, sent: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    match sent {
        Some(sent) if !sent.is_empty() => sent.as_bytes().ct_eq(session.csrf.as_bytes()).into(),
        _ => false,
    }
}

/// The value of cookie `name` in a `Cookie` header, if present.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The `Set-Cookie` value that opens a session (`secure` when served over TLS).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// How long a JWT has left, from its `exp` claim, at `now_unix` seconds. `None` when the token
/// is not a JWT or has no readable `exp` (the session then ends only when idle). The signature
/// is not checked here: the token was accepted by the API server's TokenReview first, and this
/// only ever shortens a session.
pub fn jwt_lifetime(token: &str, now_unix: i64) -> Option<Duration> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    Some(Duration::from_secs(
        u64::try_from(exp.saturating_sub(now_unix)).unwrap_or(0),
    ))
}

/// 256 random bits from the operating system's generator, as 64 hex digits.
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str) -> Identity {
        Identity {
            user: user.into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_session_lives_while_used_and_ends_when_idle() {
        let t0 = Instant::now();
        let mut s = Sessions::new(10, Duration::from_secs(100));
        s.open("a".into(), "c".into(), who("alice"), None, t0)
            .unwrap();
        assert!(s.touch("a", t0 + Duration::from_secs(90)).is_some());
        // Used at 90 s: still alive at 180 s.
        assert!(s.touch("a", t0 + Duration::from_secs(180)).is_some());
        assert!(s.touch("a", t0 + Duration::from_secs(281)).is_none());
        assert!(s.is_empty(), "an expired session is dropped");
        assert!(s.touch("unknown", t0).is_none());
    }

    #[test]
    fn a_session_ends_when_its_token_does() {
        let t0 = Instant::now();
        let mut s = Sessions::new(10, Duration::from_secs(1000));
        s.open(
            "a".into(),
            "c".into(),
            who("alice"),
            Some(Duration::from_secs(60)),
            t0,
        )
        .unwrap();
        assert!(s.touch("a", t0 + Duration::from_secs(59)).is_some());
        assert!(s.touch("a", t0 + Duration::from_secs(60)).is_none());
        assert_eq!(
            s.open("b".into(), "c".into(), who("bob"), Some(Duration::ZERO), t0)
                .unwrap_err(),
            SessionError::Expired
        );
    }

    #[test]
    fn the_session_map_is_bounded_and_expired_sessions_make_room() {
        let t0 = Instant::now();
        let mut s = Sessions::new(2, Duration::from_secs(10));
        s.open("a".into(), "c".into(), who("a"), None, t0).unwrap();
        s.open("b".into(), "c".into(), who("b"), None, t0).unwrap();
        let full = s
            .open("c".into(), "c".into(), who("c"), None, t0)
            .unwrap_err();
        assert_eq!(full, SessionError::Full(2));
        assert!(full.to_string().contains("too many"), "{full}");
        // Once the others are idle past the limit, a new one fits.
        let later = t0 + Duration::from_secs(11);
        s.open("c".into(), "c".into(), who("c"), None, later)
            .unwrap();
        assert_eq!(s.len(), 1);
        assert!(s.close("c"));
        assert!(!s.close("c"));
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let t0 = Instant::now();
        let mut s = Sessions::default();
        let session = s
            .open("a".into(), "secret-1".into(), who("a"), None, t0)
            .unwrap()
            .clone();
        assert!(csrf_matches(&session, Some("secret-1")));
        assert!(!csrf_matches(&session, Some("secret-2")));
        assert!(!csrf_matches(&session, Some("secret-")));
        assert!(!csrf_matches(&session, Some("")));
        assert!(!csrf_matches(&session, None));
    }

    #[test]
    fn cookies_are_found_among_others() {
        assert_eq!(
            cookie_value("a=1; cvs_session=abc; b=2", COOKIE),
            Some("abc")
        );
        assert_eq!(cookie_value("cvs_session=\"q\"", COOKIE), Some("q"));
        assert_eq!(cookie_value("xcvs_session=abc", COOKIE), None);
        assert_eq!(cookie_value("", COOKIE), None);
        let set = set_cookie("abc", false);
        assert_eq!(set, "cvs_session=abc; HttpOnly; SameSite=Strict; Path=/");
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn token_lifetime_comes_from_the_exp_claim() {
        use base64::Engine as _;
        let enc = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let jwt = |claims| {
            format!(
                "{}.{}.sig",
                enc(serde_json::json!({"alg":"RS256"})),
                enc(claims)
            )
        };
        let token = jwt(serde_json::json!({"exp": 1_000_600, "sub": "x"}));
        assert_eq!(
            jwt_lifetime(&token, 1_000_000),
            Some(Duration::from_secs(600))
        );
        assert_eq!(jwt_lifetime(&token, 2_000_000), Some(Duration::ZERO));
        assert_eq!(jwt_lifetime(&jwt(serde_json::json!({"sub": "x"})), 0), None);
        assert_eq!(jwt_lifetime("not-a-jwt", 0), None);
        assert_eq!(jwt_lifetime("a.!!!.c", 0), None);
        assert_eq!(jwt_lifetime("a.b.c.d", 0), None);
    }

    #[test]
    fn random_tokens_are_256_bits_and_differ() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
