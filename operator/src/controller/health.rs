//! What `/healthz` and `/readyz` report, from what the controllers and the probe engine do.
//!
//! * Ready: both caches have had their first full list, and no watch is failing now (a watch
//!   whose list or watch request fails, for example while the CRDs are deleted, makes the
//!   operator not ready until it delivers events again).
//! * Live: no controller has stopped, no reconciliation has run longer than
//!   [`STUCK_RECONCILE`], every controller with objects to reconcile has finished a
//!   reconciliation within its progress bound (each object is requeued periodically, so a
//!   controller that finishes none is wedged), the probe engine has published a verdict for
//!   every instance it judges within the stall bound, and the watchdog that checks all this
//!   still ticks.
//!
//! The decisions (`readiness`, `liveness`) are pure functions of the recorded facts and a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A reconciliation running longer than this means its controller is stuck. Every API call has
/// the client's own timeouts (under 5 minutes) and every AWS call a few seconds, so a healthy
/// reconciliation never comes close.
pub const STUCK_RECONCILE: Duration = Duration::from_secs(300);
/// The probe-engine watchdog ticks this often; a tick older than [`WATCHDOG_LATE`] means the
/// runtime no longer runs it.
pub const WATCHDOG_EVERY: Duration = Duration::from_secs(5);
pub const WATCHDOG_LATE: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Inner {
    synced: AtomicBool,
    facts: Mutex<Facts>,
    next_id: AtomicU64,
}

/// What has been recorded; the input of the pure decisions.
#[derive(Default, Clone, Debug)]
pub struct Facts {
    /// Watches whose last result was an error, with the error.
    pub failing_watches: BTreeMap<&'static str, String>,
    /// Controllers whose loop has ended.
    pub stopped: BTreeSet<&'static str>,
    /// Reconciliations in flight: controller and start.
    pub in_flight: HashMap<u64, (&'static str, Instant)>,
    /// The last probe-engine check: when it ran, and what it found stalled.
    pub watchdog: Option<(Instant, Option<String>)>,
    /// Per controller: when it last finished a reconciliation (or started), the longest it may
    /// go without one while it has objects, and whether it has objects (from the watchdog).
    pub progress: BTreeMap<&'static str, Progress>,
}

/// A controller's progress, for its heartbeat.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub last: Instant,
    pub bound: Duration,
    pub has_objects: bool,
}

/// Liveness and readiness of the operator. Cheap to clone.
#[derive(Clone, Default)]
pub struct Health(Arc<Inner>);

/// Removes a reconciliation from the in-flight set when dropped, however it ends.
pub struct InFlight {
    health: Health,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.health.facts().in_flight.remove(&self.id);
    }
}

impl Health {
    fn facts(&self) -> std::sync::MutexGuard<'_, Facts> {
        self.0.facts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Both caches have had their first full list.
    pub fn set_synced(&self) {
        self.0.synced.store(true, Ordering::Relaxed);
    }

    /// A watch delivered an event: it works.
    pub fn watch_ok(&self, watch: &'static str) {
        let mut facts = self.facts();
        if facts.failing_watches.remove(watch).is_some() {
            tracing::info!(watch, "watch recovered");
        }
    }

    /// A watch failed; it is retried with a short backoff. The first failure of a streak is
    /// logged at WARN (with the recovery at INFO), the retries at DEBUG.
    pub fn watch_failed(&self, watch: &'static str, error: &dyn std::fmt::Display) {
        let was_failing = self
            .facts()
            .failing_watches
            .insert(watch, error.to_string())
            .is_some();
        if was_failing {
            tracing::debug!(watch, %error, "watch failed again; retrying");
        } else {
            tracing::warn!(watch, %error, "watch failed; retrying (not ready until it recovers)");
        }
    }

    /// A controller starts; with objects to reconcile it must finish one within `bound`.
    pub fn controller_started(&self, controller: &'static str, bound: Duration) {
        self.facts().progress.insert(
            controller,
            Progress {
                last: Instant::now(),
                bound,
                has_objects: false,
            },
        );
    }

    /// A controller finished a reconciliation (successful or not).
    pub fn progressed(&self, controller: &'static str) {
        if let Some(p) = self.facts().progress.get_mut(controller) {
            p.last = Instant::now();
        }
    }

    /// Whether a controller has objects to reconcile now.
    pub fn has_objects(&self, controller: &'static str, has: bool) {
        if let Some(p) = self.facts().progress.get_mut(controller) {
            if has && !p.has_objects {
                // The bound counts from when there is work.
                p.last = p.last.max(Instant::now());
            }
            p.has_objects = has;
        }
    }

    /// A controller's loop ended.
    pub fn stopped(&self, controller: &'static str) {
        self.facts().stopped.insert(controller);
    }

    /// Records a reconciliation as running until the returned guard is dropped.
    pub fn reconcile_started(&self, controller: &'static str) -> InFlight {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        self.facts()
            .in_flight
            .insert(id, (controller, Instant::now()));
        InFlight {
            health: self.clone(),
            id,
        }
    }

    /// The probe-engine watchdog ran at `at` and found `stalled` (None: nothing stalled).
    pub fn watchdog_tick(&self, at: Instant, stalled: Option<String>) {
        self.facts().watchdog = Some((at, stalled));
    }

    /// Why the operator is not ready, if it is not.
    pub fn readiness(&self) -> Result<(), String> {
        readiness(self.0.synced.load(Ordering::Relaxed), &self.facts())
    }

    /// Why the operator is not live, if it is not.
    pub fn liveness(&self, now: Instant) -> Result<(), String> {
        liveness(&self.facts(), now)
    }
}

/// Ready: synced, and no watch failing.
pub fn readiness(synced: bool, facts: &Facts) -> Result<(), String> {
    if !synced {
        return Err("caches not synced yet".into());
    }
    if let Some((watch, error)) = facts.failing_watches.iter().next() {
        return Err(format!("watch of {watch} failing: {error}"));
    }
    Ok(())
}

/// Live: no controller stopped, none stuck, the probe engine publishing, the watchdog ticking.
pub fn liveness(facts: &Facts, now: Instant) -> Result<(), String> {
    if let Some(c) = facts.stopped.iter().next() {
        return Err(format!("the {c} controller has stopped"));
    }
    if let Some((c, since)) = facts
        .in_flight
        .values()
        .find(|(_, since)| now.saturating_duration_since(*since) > STUCK_RECONCILE)
    {
        return Err(format!(
            "a {c} reconciliation has been running for {}s",
            now.saturating_duration_since(*since).as_secs()
        ));
    }
    if let Some((c, p)) = facts
        .progress
        .iter()
        .find(|(_, p)| p.has_objects && now.saturating_duration_since(p.last) > p.bound)
    {
        return Err(format!(
            "the {c} controller has finished no reconciliation for {}s",
            now.saturating_duration_since(p.last).as_secs()
        ));
    }
    match &facts.watchdog {
        Some((at, _)) if now.saturating_duration_since(*at) > WATCHDOG_LATE => Err(format!(
            "the probe watchdog last ran {}s ago",
            now.saturating_duration_since(*at).as_secs()
        )),
        Some((_, Some(stalled))) => Err(format!("the probe engine is stuck: {stalled}")),
        _ => Ok(()),
    }
}

/// The instances whose latest verdict is older than `bound` at `now` (the probe engine
/// republishes every instance's verdict at least once per master-playlist round, so an old one
/// means its task no longer runs); a summary for `/healthz`, or None.
pub fn stalled_probes(
    verdict_ages: impl IntoIterator<Item = (String, Duration)>,
    bound: Duration,
) -> Option<String> {
    let stalled: Vec<(String, Duration)> = verdict_ages
        .into_iter()
        .filter(|(_, age)| *age > bound)
        .collect();
    let (first, age) = stalled.first()?;
    Some(format!(
        "{} instance(s) without a new verdict for over {}s, for example {first} ({}s)",
        stalled.len(),
        bound.as_secs(),
        age.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_synced_and_no_watch_fails() {
        let health = Health::default();
        assert!(health.readiness().is_err());
        health.set_synced();
        assert_eq!(health.readiness(), Ok(()));
        health.watch_failed("streaminstances", &"404 page not found");
        let why = health.readiness().unwrap_err();
        assert!(
            why.contains("streaminstances") && why.contains("404"),
            "{why}"
        );
        health.watch_ok("streaminstances");
        assert_eq!(health.readiness(), Ok(()));
    }

    #[test]
    fn a_stopped_controller_is_not_live() {
        let health = Health::default();
        assert_eq!(health.liveness(Instant::now()), Ok(()));
        health.stopped("instance");
        assert!(
            health
                .liveness(Instant::now())
                .unwrap_err()
                .contains("instance")
        );
    }

    #[test]
    fn a_reconciliation_that_never_ends_is_not_live() {
        let health = Health::default();
        let guard = health.reconcile_started("cluster");
        let now = Instant::now();
        assert_eq!(health.liveness(now), Ok(()));
        let later = now + STUCK_RECONCILE + Duration::from_secs(1);
        assert!(health.liveness(later).unwrap_err().contains("cluster"));
        drop(guard);
        assert_eq!(health.liveness(later), Ok(()));
    }

    #[test]
    fn a_controller_that_finishes_nothing_while_it_has_objects_is_not_live() {
        let health = Health::default();
        let bound = Duration::from_secs(90);
        health.controller_started("instance", bound);
        let later = Instant::now() + bound * 2;
        // No objects: nothing to finish.
        assert_eq!(health.liveness(later), Ok(()));
        health.has_objects("instance", true);
        assert!(
            health
                .liveness(later)
                .unwrap_err()
                .contains("instance controller")
        );
        health.progressed("instance");
        assert_eq!(health.liveness(Instant::now()), Ok(()));
    }

    #[test]
    fn a_stuck_probe_engine_or_a_silent_watchdog_is_not_live() {
        let health = Health::default();
        let now = Instant::now();
        health.watchdog_tick(now, None);
        assert_eq!(health.liveness(now), Ok(()));
        assert!(
            health
                .liveness(now + WATCHDOG_LATE + Duration::from_secs(1))
                .is_err()
        );
        let stalled = stalled_probes(
            [
                ("ns/a".to_owned(), Duration::from_secs(5)),
                ("ns/b".to_owned(), Duration::from_secs(500)),
            ],
            Duration::from_secs(120),
        );
        assert!(stalled.as_deref().unwrap().contains("ns/b"), "{stalled:?}");
        health.watchdog_tick(now, stalled);
        assert!(health.liveness(now).unwrap_err().contains("stuck"));
        assert_eq!(
            stalled_probes(
                [("ns/a".to_owned(), Duration::from_secs(5))],
                Duration::from_secs(120)
            ),
            None
        );
    }
}
