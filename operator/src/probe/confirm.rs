//! Confirming a fetch before its answer counts: a failed fetch (or a suspicious playlist, see
//! [`decision::needs_confirmation`]) is fetched again once, quickly, and the second answer is
//! the one applied. A request that has not answered after [`Confirm::hedge_after`] gets a second
//! one beside it, and the first good answer wins, so one hanging request cannot hold a
//! rendition's verdict for the whole request timeout either.
//!
//! Bounded: at most two requests per poll; the second starts [`Confirm::retry_delay`] after a
//! failed first one (or `hedge_after` into a hanging one) and has [`Confirm::retry_timeout`].

use super::decision::{self, Failure, Snapshot};
use std::future::Future;
use std::time::Duration;
use tokio::time::{sleep, timeout};

/// How a fetch is confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirm {
    /// Wait after a failed first request before the second.
    pub retry_delay: Duration,
    /// Start the second request beside a first one still unanswered after this long.
    pub hedge_after: Duration,
    /// Timeout of the second request.
    pub retry_timeout: Duration,
}

impl Default for Confirm {
    fn default() -> Self {
        Self {
            retry_delay: Duration::from_millis(100),
            hedge_after: Duration::from_millis(750),
            retry_timeout: Duration::from_millis(1_000),
        }
    }
}

impl Confirm {
    /// The settings for one poll of a playlist with target duration `td_ms` whose staleness
    /// deadline is `until_deadline_ms` away (if it is watched): the second request starts beside
    /// a hanging one after `hedge_after` (at most half the target duration), and at the latest
    /// [`HEDGE_BEFORE_DEADLINE_MS`] before the deadline, so one hanging request does not let
    /// the deadline pass on a live origin. Never sooner than [`MIN_HEDGE_MS`]. Not sooner than
    /// that either: hedging early doubles the requests of every slow answer, and a loaded origin
    /// needs fewer, not more.
    pub fn for_poll(self, td_ms: u64, until_deadline_ms: Option<u64>) -> Confirm {
        let mut hedge = self.hedge_after.as_millis() as u64;
        hedge = hedge.min(td_ms / 2);
        if let Some(left) = until_deadline_ms {
            hedge = hedge.min(left.saturating_sub(HEDGE_BEFORE_DEADLINE_MS));
        }
        Confirm {
            hedge_after: Duration::from_millis(hedge.max(MIN_HEDGE_MS)),
            ..self
        }
    }
}

/// See [`Confirm::for_poll`].
pub const HEDGE_BEFORE_DEADLINE_MS: u64 = 150;
/// See [`Confirm::for_poll`].
pub const MIN_HEDGE_MS: u64 = 50;

/// What confirming cost and changed, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Attempts {
    /// A second request was sent.
    pub retried: bool,
    /// The first answer needed confirmation and the final one does not: a glitch absorbed.
    pub recovered: bool,
    /// The second request was sent beside a slow first one, which then answered well first.
    pub hedged: bool,
}

/// Runs `attempt` and, when its answer needs confirmation (`needs`) or it is slow, once more;
/// returns the answer to apply. The first request keeps its own (longer) timeout; a second one
/// started beside a hanging first one wins if it answers well first.
pub async fn confirmed<T, F, Fut>(
    settings: Confirm,
    attempt: F,
    needs: impl Fn(&Result<T, Failure>) -> bool,
) -> (Result<T, Failure>, Attempts)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let second = || async {
        match timeout(settings.retry_timeout, attempt()).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        }
    };
    let first = attempt();
    tokio::pin!(first);
    let early = tokio::select! {
        r = &mut first => Some(r),
        _ = sleep(settings.hedge_after) => None,
    };
    match early {
        Some(r) if !needs(&r) => (r, Attempts::default()),
        Some(_) => {
            sleep(settings.retry_delay).await;
            let r = second().await;
            let recovered = !needs(&r);
            (
                r,
                Attempts {
                    retried: true,
                    recovered,
                    hedged: false,
                },
            )
        }
        None => {
            // The first request hangs: a second one beside it; the first good answer wins,
            // else the last answer to come.
            let hedge = second();
            tokio::pin!(hedge);
            let (r, other_first) = tokio::select! {
                r = &mut first => (r, true),
                r = &mut hedge => (r, false),
            };
            if !needs(&r) {
                return (
                    r,
                    Attempts {
                        retried: true,
                        recovered: !other_first,
                        hedged: other_first,
                    },
                );
            }
            let r = if other_first {
                hedge.await
            } else {
                first.await
            };
            let recovered = !needs(&r);
            (
                r,
                Attempts {
                    retried: true,
                    recovered,
                    hedged: false,
                },
            )
        }
    }
}

/// [`confirmed`] for a media playlist whose tracker last saw `previous`.
pub async fn confirmed_media<F, Fut>(
    settings: Confirm,
    previous: Option<Snapshot>,
    attempt: F,
) -> (Result<Snapshot, Failure>, Attempts)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Snapshot, Failure>>,
{
    confirmed(settings, attempt, |r| {
        decision::needs_confirmation(previous.as_ref(), r)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::time::Instant;

    /// Real time (the crate's tokio has no paused clock), scaled down: retry after 10 ms, hedge
    /// after 100 ms, hedge timeout 200 ms. Outcomes are asserted, timings only loosely.
    fn fast() -> Confirm {
        Confirm {
            retry_delay: Duration::from_millis(10),
            hedge_after: Duration::from_millis(100),
            retry_timeout: Duration::from_millis(200),
        }
    }

    fn transient(r: &Result<u32, Failure>) -> bool {
        r.as_ref().is_err_and(Failure::is_transient)
    }

    type Answer = std::pin::Pin<Box<dyn Future<Output = Result<u32, Failure>> + Send>>;

    /// Attempt `n` (from 0) answers `script[n]` after `delays[n]` ms.
    fn scripted(
        script: Vec<Result<u32, Failure>>,
        delays: Vec<u64>,
    ) -> (Arc<AtomicU32>, impl Fn() -> Answer) {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let f = move || {
            let n = c.fetch_add(1, Ordering::SeqCst) as usize;
            let r = script[n.min(script.len() - 1)].clone();
            let d = delays[n.min(delays.len() - 1)];
            Box::pin(async move {
                sleep(Duration::from_millis(d)).await;
                r
            }) as Answer
        };
        (calls, f)
    }

    #[test]
    fn the_hedge_comes_early_enough_for_the_deadline() {
        let c = Confirm::default();
        assert_eq!(
            c.for_poll(6_000, None).hedge_after,
            Duration::from_millis(750)
        );
        assert_eq!(
            c.for_poll(2_000, None).hedge_after,
            Duration::from_millis(750)
        );
        assert_eq!(
            c.for_poll(1_000, Some(5_000)).hedge_after,
            Duration::from_millis(500)
        );
        assert_eq!(
            c.for_poll(6_000, Some(400)).hedge_after,
            Duration::from_millis(250)
        );
        assert_eq!(
            c.for_poll(6_000, Some(0)).hedge_after,
            Duration::from_millis(50)
        );
        assert_eq!(c.for_poll(0, None).hedge_after, Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_good_answer_is_taken_at_once() {
        let (calls, f) = scripted(vec![Ok(1)], vec![10]);
        let (r, a) = confirmed(fast(), f, transient).await;
        assert_eq!(
            (r, a, calls.load(Ordering::SeqCst)),
            (Ok(1), Attempts::default(), 1)
        );
    }

    #[tokio::test]
    async fn a_single_failure_is_absorbed_by_the_retry_within_a_second() {
        let start = Instant::now();
        let (calls, f) = scripted(vec![Err(Failure::Http(500)), Ok(2)], vec![5, 5]);
        let (r, a) = confirmed(fast(), f, transient).await;
        assert_eq!(r, Ok(2));
        assert!(a.retried && a.recovered);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn two_failures_are_a_confirmed_failure() {
        let (_, f) = scripted(
            vec![Err(Failure::Http(503)), Err(Failure::Http(503))],
            vec![5, 5],
        );
        let (r, a) = confirmed(fast(), f, transient).await;
        assert_eq!(r, Err(Failure::Http(503)));
        assert!(a.retried && !a.recovered);
        // A failure that gives the same answer every time is not retried.
        let (calls, f) = scripted(vec![Err(Failure::TooLarge(1))], vec![5]);
        let (r, a) = confirmed(fast(), f, transient).await;
        assert_eq!(r, Err(Failure::TooLarge(1)));
        assert!(!a.retried);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_hanging_request_is_hedged_and_the_hedge_wins() {
        let start = Instant::now();
        // The first request would answer only after 20 s (its timeout); the hedge at 100 ms
        // answers in 10 ms.
        let (_, f) = scripted(vec![Err(Failure::Timeout), Ok(7)], vec![20_000, 10]);
        let (r, a) = confirmed(fast(), f, transient).await;
        assert_eq!(r, Ok(7));
        assert!(a.retried && a.recovered);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_slow_but_good_first_answer_still_wins() {
        // 300 ms to answer: hedged at 100 ms, the hedge fails fast, the first answers well.
        let (_, f) = scripted(vec![Ok(1), Err(Failure::Http(500))], vec![300, 5]);
        let (r, a) = confirmed(fast(), f, transient).await;
        assert_eq!(r, Ok(1));
        assert!(a.retried);
        // Both hang: the hedge's timeout, then the first's own answer (its timeout).
        let (_, f) = scripted(vec![Err(Failure::Timeout), Ok(9)], vec![500, 60_000]);
        let start = Instant::now();
        let (r, _) = confirmed(fast(), f, transient).await;
        assert_eq!(r, Err(Failure::Timeout));
        assert!(start.elapsed() >= Duration::from_millis(500));
        assert!(start.elapsed() < Duration::from_secs(30));
    }

    #[tokio::test]
    async fn a_sequence_reset_is_read_twice() {
        let prev = Snapshot {
            media_sequence: 100,
            segment_count: 6,
            target_duration_ms: 2_000,
            last_segment_ms: 2_000,
            ended: false,
            newest_end_unix_ms: None,
        };
        let reset = Snapshot {
            media_sequence: 3,
            ..prev
        };
        let next = Snapshot {
            media_sequence: 101,
            ..prev
        };
        // A cache node with an old copy answers once: the second answer is applied.
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let (r, a) = confirmed_media(fast(), Some(prev), || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move { Ok(if n == 0 { reset } else { next }) }
        })
        .await;
        assert_eq!(r, Ok(next));
        assert!(a.recovered);
        // A real restart reads the same twice.
        let (r, a) = confirmed_media(fast(), Some(prev), || async move { Ok(reset) }).await;
        assert_eq!(r, Ok(reset));
        assert!(a.retried && !a.recovered);
    }
}
