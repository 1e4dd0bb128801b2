//! When a region that reopens is offered to players again.
//!
//! The copilot caches each table read for `tableCacheSeconds`, so for that long after the table
//! says "open" a copilot container that read "closed" just before still answers 404. Were the
//! region put back into the steering manifest's `PATHWAY-PRIORITY` (and, with
//! `closedVariants: Omit`, into the master) in the same round as the table write, players steered
//! back to it would meet those 404s and fail over again. So a reopened pathway is offered only
//! once it has been open for the settle time (see [`settle_time`]); until then the publication
//! treats it as closed, and the reconciler comes back when the time is up.
//!
//! Nothing is held back when nothing is known: a pathway first seen open (the operator started,
//! the instance was added) is offered at once. Nor is anything held back when no other open
//! pathway could be offered: players must always have somewhere to go.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::resources::{ClusteredStreamSpec, CopilotTrigger};

/// CloudFront's default error caching minimum TTL for a 404 (no custom error response): how long
/// an edge keeps answering a 404 the copilot made on origin-response.
pub const CLOUDFRONT_DEFAULT_ERROR_TTL: Duration = Duration::from_secs(10);

/// How long a reopened pathway waits before it is offered: nothing without an enabled copilot;
/// `tableCacheSeconds` on viewer-request (its 404s are never cached by CloudFront); on
/// origin-response also CloudFront's default error caching minimum TTL, which keeps the
/// copilot's 404s at the edge after the copilot itself lets the region through.
pub fn settle_time(spec: &ClusteredStreamSpec) -> Duration {
    match spec.copilot.as_ref().filter(|c| c.enabled) {
        None => Duration::ZERO,
        Some(c) => {
            let cache = Duration::from_secs(u64::from(c.table_cache_seconds.min(300)));
            match c.trigger {
                CopilotTrigger::ViewerRequest => cache,
                CopilotTrigger::OriginResponse => cache + CLOUDFRONT_DEFAULT_ERROR_TTL,
            }
        }
    }
}

/// What is remembered of one pathway between rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memo {
    /// Its effective open state in the last round.
    pub open: bool,
    /// When it was seen to reopen, while it is still settling.
    pub reopened_at: Option<Instant>,
}

/// The outcome of [`offers`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offers {
    /// Per pathway (by name): whether players are offered it (open and settled).
    pub offered: HashMap<String, bool>,
    /// What to remember for the next round (the pathways given, nothing else).
    pub memo: HashMap<String, Memo>,
    /// When the next pathway finishes settling: reconcile again then.
    pub recheck: Option<Duration>,
}

/// Decides which open pathways are offered to players at `now`. `pathways` are (name, effective
/// open state); `memo` is what the previous round returned.
pub fn offers(
    pathways: &[(&str, bool)],
    memo: &HashMap<String, Memo>,
    now: Instant,
    settle: Duration,
) -> Offers {
    let mut out = Offers {
        offered: HashMap::new(),
        memo: HashMap::new(),
        recheck: None,
    };
    for &(name, open) in pathways {
        let before = memo.get(name);
        let reopened_at = match (open, before) {
            (false, _) => None,
            // A close seen: the reopen starts settling now.
            (true, Some(m)) if !m.open => Some(now),
            (true, Some(m)) => m.reopened_at,
            // Nothing known: nothing to wait for.
            (true, None) => None,
        };
        let waited = reopened_at.map(|at| now.saturating_duration_since(at));
        let settling = waited.filter(|w| *w < settle);
        if let Some(w) = settling {
            let left = settle - w;
            out.recheck = Some(out.recheck.map_or(left, |r| r.min(left)));
        }
        out.offered
            .insert(name.to_owned(), open && settling.is_none());
        out.memo.insert(
            name.to_owned(),
            Memo {
                open,
                reopened_at: reopened_at.filter(|_| settling.is_some()),
            },
        );
    }
    // Players must have somewhere to go: if every open pathway is settling, offer them all, and
    // count them as settled (players are sent there now; taking them back later would move them
    // for nothing).
    let any_open = pathways.iter().any(|(_, open)| *open);
    if any_open && !out.offered.values().any(|o| *o) {
        for &(name, open) in pathways {
            out.offered.insert(name.to_owned(), open);
            if let Some(m) = out.memo.get_mut(name) {
                m.reopened_at = None;
            }
        }
        out.recheck = None;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::CopilotSpec;

    const SETTLE: Duration = Duration::from_secs(5);

    fn round(
        pathways: &[(&str, bool)],
        memo: &HashMap<String, Memo>,
        now: Instant,
    ) -> (Vec<(String, bool)>, Offers) {
        let o = offers(pathways, memo, now, SETTLE);
        let mut v: Vec<(String, bool)> = o.offered.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort();
        (v, o)
    }

    fn offered(v: &[(&str, bool)]) -> Vec<(String, bool)> {
        v.iter().map(|(k, b)| ((*k).to_owned(), *b)).collect()
    }

    #[test]
    fn a_reopened_pathway_is_offered_only_after_the_settle_time() {
        let t = Instant::now();
        let (v, o) = round(&[("a", true), ("b", true)], &HashMap::new(), t);
        assert_eq!(
            v,
            offered(&[("a", true), ("b", true)]),
            "first seen open: offered"
        );
        assert_eq!(o.recheck, None);
        let (v, o) = round(
            &[("a", false), ("b", true)],
            &o.memo,
            t + Duration::from_secs(1),
        );
        assert_eq!(v, offered(&[("a", false), ("b", true)]));
        // Reopened: held back for the copilot's cache, and the reconciler is told when to return.
        let (v, o) = round(
            &[("a", true), ("b", true)],
            &o.memo,
            t + Duration::from_secs(10),
        );
        assert_eq!(v, offered(&[("a", false), ("b", true)]));
        assert_eq!(o.recheck, Some(SETTLE));
        let (v, o) = round(
            &[("a", true), ("b", true)],
            &o.memo,
            t + Duration::from_secs(13),
        );
        assert_eq!(v, offered(&[("a", false), ("b", true)]));
        assert_eq!(o.recheck, Some(Duration::from_secs(2)));
        let (v, o) = round(
            &[("a", true), ("b", true)],
            &o.memo,
            t + Duration::from_secs(15),
        );
        assert_eq!(v, offered(&[("a", true), ("b", true)]));
        assert_eq!(o.recheck, None);
        assert_eq!(
            o.memo["a"],
            Memo {
                open: true,
                reopened_at: None
            }
        );
    }

    #[test]
    fn closing_again_while_settling_starts_over() {
        let t = Instant::now();
        let (_, o) = round(&[("a", false), ("b", true)], &HashMap::new(), t);
        let (_, o) = round(
            &[("a", true), ("b", true)],
            &o.memo,
            t + Duration::from_secs(1),
        );
        let (_, o) = round(
            &[("a", false), ("b", true)],
            &o.memo,
            t + Duration::from_secs(2),
        );
        let (v, o) = round(
            &[("a", true), ("b", true)],
            &o.memo,
            t + Duration::from_secs(6),
        );
        assert_eq!(v, offered(&[("a", false), ("b", true)]));
        assert_eq!(o.recheck, Some(SETTLE));
    }

    #[test]
    fn nothing_is_held_back_when_no_other_pathway_is_offered() {
        let t = Instant::now();
        let (_, o) = round(&[("a", false), ("b", false)], &HashMap::new(), t);
        let (v, o) = round(
            &[("a", true), ("b", false)],
            &o.memo,
            t + Duration::from_secs(1),
        );
        assert_eq!(v, offered(&[("a", true), ("b", false)]));
        assert_eq!(o.recheck, None);
        // And while another is settling, a pathway that was offered stays offered.
        let (v, _) = round(
            &[("a", true), ("b", true)],
            &o.memo,
            t + Duration::from_secs(2),
        );
        assert_eq!(v, offered(&[("a", true), ("b", false)]));
    }

    #[test]
    fn without_settle_time_a_reopen_is_offered_at_once() {
        let t = Instant::now();
        let o = offers(
            &[("a", false), ("b", true)],
            &HashMap::new(),
            t,
            Duration::ZERO,
        );
        let o = offers(&[("a", true), ("b", true)], &o.memo, t, Duration::ZERO);
        assert!(o.offered["a"]);
        assert_eq!(o.recheck, None);
    }

    #[test]
    fn settle_time_follows_the_copilot() {
        let mut spec: ClusteredStreamSpec = serde_json::from_value(serde_json::json!({
            "stateTable": {"name": "t", "region": "us-east-1"}
        }))
        .unwrap();
        assert_eq!(settle_time(&spec), Duration::ZERO);
        let copilot: CopilotSpec = serde_json::from_value(serde_json::json!({
            "enabled": true, "roleArn": "arn:aws:iam::123456789012:role/r",
            "trigger": "viewer-request", "tableCacheSeconds": 2
        }))
        .unwrap();
        spec.copilot = Some(copilot.clone());
        assert_eq!(settle_time(&spec), Duration::from_secs(2));
        spec.copilot = Some(CopilotSpec {
            trigger: CopilotTrigger::OriginResponse,
            ..copilot.clone()
        });
        assert_eq!(settle_time(&spec), Duration::from_secs(12));
        spec.copilot = Some(CopilotSpec {
            enabled: false,
            ..copilot
        });
        assert_eq!(settle_time(&spec), Duration::ZERO);
    }
}
