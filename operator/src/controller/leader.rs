//! Leader election with a `coordination.k8s.io/v1` Lease, so two or more replicas can run and
//! only one acts.
//!
//! The rules are client-go's (the ones kube-controller-manager uses), written out here because
//! neither kube-runtime 5 nor a maintained crate for kube 5 provides them with the guarantees
//! the operator needs (a standby that notices a released Lease at once, and a leader that stops
//! acting before its Lease can expire for anyone else):
//!
//! * Every write of the Lease is a replace conditional on the `resourceVersion` just read, so two
//!   candidates can never both believe they took it: one gets a conflict.
//! * A held Lease expires for a candidate `leaseDurationSeconds` after the candidate last *saw
//!   the record change* (by its own monotonic clock), never by comparing `renewTime` with its
//!   wall clock: clock skew between nodes cannot make two leaders.
//! * The leader renews every `retry_period`, and only ever the record it wrote last. If it has
//!   not renewed successfully for `renew_deadline` (shorter than the lease duration), or finds
//!   the Lease deleted, taken, released or renewed by anyone else, it stops acting at once: the
//!   process exits with [`EXIT_LEASE_LOST`] and is restarted as a standby. Exiting is the only
//!   way to be sure no task of the old term (a probe verdict on its way to a reconciliation, an
//!   SNS event in a queue, an S3 upload) acts after another replica took over.
//! * A released Lease (no holder) is taken at once. Standbys watch the Lease, so they notice a
//!   release within milliseconds; they also read it every `retry_period`, so they work when the
//!   watch does not (no `list`/`watch` permission).
//!
//! The decisions ([`observe`], [`plan`], [`taken`], [`renewed`], [`renewal`], [`released`])
//! are pure functions; [`Elector`] does the API calls around them.

use crate::metrics::Metrics;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::watcher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Exit code of a leader that could not renew its Lease within the renew deadline.
pub const EXIT_LEASE_LOST: u8 = 4;

/// Longest `leaseDurationSeconds` believed from a Lease record (an hour); a larger or missing
/// one counts as this, a zero or negative one as one second.
const MAX_RECORD_DURATION: Duration = Duration::from_secs(3600);

/// How the election runs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub namespace: String,
    pub lease_name: String,
    /// Unique per process: the pod name in a cluster.
    pub identity: String,
    /// How long a candidate waits, after it last saw the Lease change, before taking it.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long stops acting.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby reads the Lease.
    pub retry_period: Duration,
}

/// Settings that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error(
        "leader election needs the Lease's namespace: set --leader-election-namespace or POD_NAMESPACE"
    )]
    NoNamespace,
    #[error("the leader election identity is empty")]
    NoIdentity,
    #[error(
        "leader election timings must satisfy retry period ({retry:?}) < renew deadline \
         ({deadline:?}) < lease duration ({duration:?}), the lease duration at least 1s and at most 1h"
    )]
    Timings {
        retry: Duration,
        deadline: Duration,
        duration: Duration,
    },
}

impl Settings {
    /// Checks the settings. The gap between the renew deadline and the lease duration is the
    /// margin in which a leader that lost contact has stopped while nobody else has started.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.namespace.is_empty() {
            return Err(SettingsError::NoNamespace);
        }
        if self.identity.is_empty() {
            return Err(SettingsError::NoIdentity);
        }
        let ok = !self.retry_period.is_zero()
            && self.retry_period < self.renew_deadline
            && self.renew_deadline < self.lease_duration
            && self.lease_duration >= Duration::from_secs(1)
            && self.lease_duration <= MAX_RECORD_DURATION;
        if !ok {
            return Err(SettingsError::Timings {
                retry: self.retry_period,
                deadline: self.renew_deadline,
                duration: self.lease_duration,
            });
        }
        Ok(())
    }

    /// The lease duration as the record states it: whole seconds, rounded up.
    fn record_seconds(&self) -> i32 {
        let ms = self.lease_duration.as_millis();
        i32::try_from(ms.div_ceil(1000)).unwrap_or(i32::MAX)
    }
}

/// The default identity when none is given: the host name and the process id.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "cvs-operator".to_owned());
    format!("{host}_{}", std::process::id())
}

/// What a candidate knows of the Lease: its record and when the record last changed, by the
/// candidate's own clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub spec: LeaseSpec,
    pub changed_at: Instant,
}

/// Folds a freshly read record into what was known: the time of the last change moves only
/// when the record differs.
pub fn observe(previous: Option<&Observed>, spec: LeaseSpec, now: Instant) -> Observed {
    match previous {
        Some(p) if p.spec == spec => p.clone(),
        _ => Observed {
            spec,
            changed_at: now,
        },
    }
}

/// The holder a record names (an empty name is no holder).
pub fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// How long a record's holder may go without renewing, as the record says, bounded.
fn record_duration(spec: &LeaseSpec) -> Duration {
    match spec.lease_duration_seconds {
        Some(s) if s <= 0 => Duration::from_secs(1),
        Some(s) => Duration::from_secs(u64::try_from(s).unwrap_or(0)).min(MAX_RECORD_DURATION),
        None => MAX_RECORD_DURATION,
    }
}

/// What to do after reading the Lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Another candidate holds it; look again by `until` (when it expires, unless renewed).
    Follow { holder: String, until: Instant },
    /// Write this record (take the Lease, or renew it).
    Write(LeaseSpec),
}

/// The decision on a Lease read at `now` (`wall` is the wall-clock time written into the
/// record). A Lease held by another candidate is taken only once it has not changed for its
/// stated duration; one that names no holder, or names us, is written at once.
pub fn plan(observed: &Observed, settings: &Settings, now: Instant, wall: jiff::Timestamp) -> Plan {
    match holder(&observed.spec) {
        Some(h) if h == settings.identity => Plan::Write(renewed(&observed.spec, settings, wall)),
        Some(h) => {
            let until = observed.changed_at + record_duration(&observed.spec);
            if now < until {
                Plan::Follow {
                    holder: h.to_owned(),
                    until,
                }
            } else {
                Plan::Write(taken(&observed.spec, settings, wall))
            }
        }
        None => Plan::Write(taken(&observed.spec, settings, wall)),
    }
}

/// The record of a Lease taken over from `previous` (another holder, or none).
pub fn taken(previous: &LeaseSpec, settings: &Settings, wall: jiff::Timestamp) -> LeaseSpec {
    let transitions = previous.lease_transitions.unwrap_or(0).max(0);
    let changes_holder = holder(previous).is_some_and(|h| h != settings.identity);
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(settings.record_seconds()),
        acquire_time: Some(MicroTime(wall)),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: Some(if changes_holder {
            transitions.saturating_add(1)
        } else {
            transitions
        }),
        ..Default::default()
    }
}

/// The record of our own Lease renewed at `wall`.
pub fn renewed(previous: &LeaseSpec, settings: &Settings, wall: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(settings.record_seconds()),
        acquire_time: previous.acquire_time.clone().or(Some(MicroTime(wall))),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: previous.lease_transitions,
        ..Default::default()
    }
}

/// The record of our Lease given up at `wall`: no holder, so a standby takes it at once.
pub fn released(previous: &LeaseSpec, wall: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(wall)),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: previous.lease_transitions,
        ..Default::default()
    }
}

/// The leader's renewal of the Lease it last wrote as `last_written`, now read as `current`:
/// the record to write, or why the Lease is no longer ours. Only the holder writes a held Lease,
/// so any change that is not our own (the Lease deleted, another holder, or a renewal by another
/// process claiming our identity) means someone else may be acting: stop.
pub fn renewal(
    current: Option<&LeaseSpec>,
    last_written: &LeaseSpec,
    settings: &Settings,
    wall: jiff::Timestamp,
) -> Result<LeaseSpec, String> {
    let Some(current) = current else {
        return Err("the Lease was deleted".into());
    };
    if current != last_written {
        return Err(match holder(current) {
            Some(h) if h != settings.identity => format!("the Lease is held by {h}"),
            None => "the Lease was released by someone else".into(),
            Some(_) => "the Lease was written by another process with this identity".into(),
        });
    }
    Ok(renewed(current, settings, wall))
}

/// The role of this process, for `/readyz`, the metric and the start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Has not read the Lease yet.
    Starting,
    /// Another candidate (named, when known) leads.
    Standby { leader: Option<String> },
    /// This process holds the Lease: it acts.
    Leader,
}

/// What the election reports to `/readyz` and `/healthz`. Cheap to clone.
#[derive(Clone, Default)]
pub struct Status(Arc<Mutex<StatusFacts>>);

#[derive(Default, Debug, Clone)]
struct StatusFacts {
    /// Whether election is in use at all.
    enabled: bool,
    role: Option<Role>,
    /// When the Lease was last read successfully.
    last_read: Option<Instant>,
    last_error: Option<String>,
    /// When the election loop last went round.
    last_round: Option<Instant>,
    /// A standby that has not read the Lease for this long is not ready.
    stale_after: Duration,
}

impl Status {
    fn facts(&self) -> std::sync::MutexGuard<'_, StatusFacts> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The status of a process that runs without election: it always leads.
    pub fn without_election() -> Self {
        let s = Self::default();
        s.facts().role = Some(Role::Leader);
        s
    }

    fn enable(&self, stale_after: Duration) {
        let mut f = self.facts();
        f.enabled = true;
        f.role = Some(Role::Starting);
        f.stale_after = stale_after;
    }

    fn set_role(&self, role: Role) {
        self.facts().role = Some(role);
    }

    fn read_ok(&self, now: Instant) {
        let mut f = self.facts();
        f.last_read = Some(now);
        f.last_error = None;
    }

    fn read_failed(&self, error: String) {
        self.facts().last_error = Some(error);
    }

    fn round(&self, now: Instant) {
        self.facts().last_round = Some(now);
    }

    pub fn role(&self) -> Role {
        self.facts().role.clone().unwrap_or(Role::Starting)
    }

    /// `Some(Ok(what))` when this process is a standby that is fine (ready, not acting);
    /// `Some(Err(why))` when it is a standby or starting candidate that cannot follow the
    /// Lease; `None` when it leads (readiness is then the controllers').
    pub fn standby_readiness(&self, now: Instant) -> Option<Result<String, String>> {
        let f = self.facts();
        standby_readiness(&f, now)
    }

    /// Why the election loop is not live: it stopped going round.
    pub fn liveness(&self, now: Instant) -> Result<(), String> {
        let f = self.facts();
        match f.last_round {
            Some(at) if f.enabled => {
                let bound = (f.stale_after * 4).max(Duration::from_secs(60));
                if now.saturating_duration_since(at) > bound {
                    return Err(format!(
                        "the leader election loop last ran {}s ago",
                        now.saturating_duration_since(at).as_secs()
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn standby_readiness(f: &StatusFacts, now: Instant) -> Option<Result<String, String>> {
    if !f.enabled {
        return None;
    }
    let role = f.role.clone().unwrap_or(Role::Starting);
    if role == Role::Leader {
        return None;
    }
    let fresh = f
        .last_read
        .is_some_and(|at| now.saturating_duration_since(at) <= f.stale_after);
    match (role, fresh) {
        (Role::Standby { leader }, true) => Some(Ok(format!(
            "standby; the leader is {}",
            leader.as_deref().unwrap_or("nobody yet")
        ))),
        (_, _) => Some(Err(format!(
            "cannot read the leader election Lease: {}",
            f.last_error.as_deref().unwrap_or("not read yet")
        ))),
    }
}

/// Runs the election for one process.
pub struct Elector {
    api: Api<Lease>,
    settings: Settings,
    status: Status,
    metrics: Arc<Metrics>,
    recorder: kube::runtime::events::Recorder,
}

/// Asks the elector to give up its Lease (if it holds it); answered once the release is written
/// (or failed), after which the elector does nothing more.
pub type ReleaseRequest = tokio::sync::oneshot::Sender<()>;

impl Elector {
    pub fn new(
        client: kube::Client,
        settings: Settings,
        status: Status,
        metrics: Arc<Metrics>,
    ) -> Self {
        status.enable(settings.lease_duration);
        let reporter = kube::runtime::events::Reporter {
            controller: crate::controller::OPERATOR_NAME.into(),
            instance: Some(settings.identity.clone()),
        };
        Self {
            api: Api::namespaced(client.clone(), &settings.namespace),
            recorder: kube::runtime::events::Recorder::new(client, reporter),
            settings,
            status,
            metrics,
        }
    }

    /// Starts the election. The returned receiver turns true once this process leads; it never
    /// turns false, because a leader that loses its Lease ends the process. Send on the
    /// returned channel to give the Lease up (at shutdown, once nothing acts any more).
    pub fn start(
        self,
    ) -> (
        watch::Receiver<bool>,
        tokio::sync::mpsc::Sender<ReleaseRequest>,
    ) {
        let (lead_tx, lead_rx) = watch::channel(false);
        let (release_tx, release_rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(self.run(lead_tx, release_rx));
        (lead_rx, release_tx)
    }

    /// A request bounded so a hanging API call cannot hold the loop past its deadlines.
    fn request_timeout(&self) -> Duration {
        (self.settings.renew_deadline / 2).max(Duration::from_millis(500))
    }

    async fn get(&self) -> Result<Option<Lease>, String> {
        match tokio::time::timeout(
            self.request_timeout(),
            self.api.get_opt(&self.settings.lease_name),
        )
        .await
        {
            Ok(Ok(lease)) => Ok(lease),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// Writes `spec` over `lease` (conditional on its resourceVersion), or creates the Lease;
    /// returns the record as stored. Ok(None): another candidate wrote first (a conflict).
    async fn write(
        &self,
        lease: Option<&Lease>,
        spec: LeaseSpec,
    ) -> Result<Option<LeaseSpec>, String> {
        let name = &self.settings.lease_name;
        let request = async {
            match lease {
                Some(current) => {
                    let mut next = current.clone();
                    next.spec = Some(spec);
                    self.api.replace(name, &PostParams::default(), &next).await
                }
                None => {
                    let new = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(self.settings.namespace.clone()),
                            ..Default::default()
                        },
                        spec: Some(spec),
                    };
                    self.api.create(&PostParams::default(), &new).await
                }
            }
        };
        match tokio::time::timeout(self.request_timeout(), request).await {
            Ok(Ok(stored)) => Ok(Some(stored.spec.unwrap_or_default())),
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => Ok(None),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// One round of a candidate: read the Lease and take or follow it. Returns the plan carried
    /// out (a `Write` only when it was written; `observed` then holds the record as stored), or
    /// None when another candidate wrote first.
    async fn round(&self, observed: &mut Option<Observed>) -> Result<Option<Plan>, String> {
        let lease = self.get().await?;
        let now = Instant::now();
        self.status.read_ok(now);
        let spec = lease
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let seen = observe(observed.as_ref(), spec, now);
        *observed = Some(seen.clone());
        let plan = plan(&seen, &self.settings, now, jiff::Timestamp::now());
        match &plan {
            Plan::Follow { .. } => Ok(Some(plan)),
            Plan::Write(spec) => match self.write(lease.as_ref(), spec.clone()).await? {
                Some(stored) => {
                    *observed = Some(Observed {
                        spec: stored,
                        changed_at: Instant::now(),
                    });
                    Ok(Some(plan))
                }
                None => Ok(None),
            },
        }
    }

    /// One renewal by the leader: `Ok(Ok(record as stored))` when renewed, `Ok(Err(why))` when
    /// the Lease is no longer ours, `Err` when the API server could not be asked.
    async fn renew(&self, last_written: &LeaseSpec) -> Result<Result<LeaseSpec, String>, String> {
        let lease = self.get().await?;
        self.status.read_ok(Instant::now());
        let next = match renewal(
            lease
                .as_ref()
                .map(|l| l.spec.clone().unwrap_or_default())
                .as_ref(),
            last_written,
            &self.settings,
            jiff::Timestamp::now(),
        ) {
            Ok(next) => next,
            Err(lost) => return Ok(Err(lost)),
        };
        match self.write(lease.as_ref(), next).await? {
            Some(stored) => Ok(Ok(stored)),
            None => Ok(Err(
                "another process wrote the Lease while this one renewed it".into(),
            )),
        }
    }

    async fn run(
        self,
        lead: watch::Sender<bool>,
        mut release: tokio::sync::mpsc::Receiver<ReleaseRequest>,
    ) {
        let s = &self.settings;
        tracing::info!(identity = %s.identity, lease = %format!("{}/{}", s.namespace, s.lease_name),
            "leader election: waiting for the Lease (standby until then)");
        // Wakes a standby when the Lease changes (a release, a renewal). Failures only log:
        // the periodic read does the work without it.
        let (changed_tx, mut changed_rx) = watch::channel(());
        let watch_task = {
            let api = self.api.clone();
            let config =
                watcher::Config::default().fields(&format!("metadata.name={}", s.lease_name));
            tokio::spawn(async move {
                let mut warned = false;
                let mut events = std::pin::pin!(kube::runtime::utils::StreamBackoff::new(
                    watcher(api, config),
                    watcher::DefaultBackoff::default()
                ));
                while let Some(event) = events.next().await {
                    match event {
                        Ok(_) => {
                            warned = false;
                            let _ = changed_tx.send(());
                        }
                        Err(e) if !warned => {
                            warned = true;
                            tracing::warn!(error = %e, "cannot watch the leader election Lease; reading it every retry period instead");
                        }
                        Err(e) => tracing::debug!(error = %e, "watch of the Lease failed again"),
                    }
                }
            })
        };

        let mut observed: Option<Observed> = None;
        let mut leader_seen: Option<String> = None;
        let mut error_logged = false;
        // Standby until the Lease is ours. A term is counted from before the write that starts
        // or renews it: no other candidate can have seen that write earlier.
        let mut last_renew;
        loop {
            last_renew = Instant::now();
            self.status.round(last_renew);
            let next = match self.round(&mut observed).await {
                Ok(Some(Plan::Write(_))) => break,
                Ok(Some(Plan::Follow { holder, until })) => {
                    error_logged = false;
                    if leader_seen.as_deref() != Some(holder.as_str()) {
                        tracing::info!(leader = %holder, "leader election: following the leader");
                        leader_seen = Some(holder.clone());
                    }
                    self.status.set_role(Role::Standby {
                        leader: Some(holder),
                    });
                    until.min(Instant::now() + s.retry_period)
                }
                // Another candidate wrote first: read again at once.
                Ok(None) => continue,
                Err(e) => {
                    if !error_logged {
                        tracing::warn!(error = %e, "leader election: cannot read or write the Lease; retrying");
                        error_logged = true;
                    }
                    self.status.read_failed(e);
                    Instant::now() + s.retry_period
                }
            };
            changed_rx.borrow_and_update();
            let lease_changed = async {
                if changed_rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = lease_changed => {}
                request = release.recv() => {
                    // Shutting down before ever leading: nothing to give up.
                    if let Some(done) = request {
                        let _ = done.send(());
                    }
                    watch_task.abort();
                    return;
                }
            }
        }
        watch_task.abort();

        // Leading.
        let mut last_written = observed.map(|o| o.spec).unwrap_or_default();
        self.status.set_role(Role::Leader);
        self.metrics.leader.set(1);
        tracing::info!(identity = %s.identity, lease = %format!("{}/{}", s.namespace, s.lease_name),
            "leader election: this process is the leader now");
        let _ = lead.send(true);
        // Best effort, and never in the way of the first renewal.
        let _ = tokio::time::timeout(s.retry_period / 2, self.announce()).await;
        let mut release_open = true;
        loop {
            let deadline = last_renew + s.renew_deadline;
            let next = (Instant::now() + s.retry_period).min(deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                request = release.recv(), if release_open => match request {
                    Some(done) => self.give_up(done).await,
                    // Nobody can ask for a release any more: keep renewing.
                    None => {
                        release_open = false;
                        continue;
                    }
                },
            }
            let attempt = Instant::now();
            self.status.round(attempt);
            let outcome = tokio::select! {
                r = self.renew(&last_written) => Some(r),
                _ = tokio::time::sleep_until(deadline.into()) => None,
                // A renewal in flight is dropped: the release reads the Lease again first.
                Some(done) = release.recv(), if release_open => self.give_up(done).await,
            };
            match outcome {
                Some(Ok(Ok(stored))) => {
                    last_written = stored;
                    last_renew = attempt;
                    error_logged = false;
                }
                Some(Ok(Err(why))) => self.lost(&why),
                Some(Err(e)) => {
                    if !error_logged {
                        tracing::warn!(error = %e, "leader election: cannot renew the Lease; retrying until the renew deadline");
                        error_logged = true;
                    }
                    self.status.read_failed(e);
                }
                None => {}
            }
            if Instant::now() >= last_renew + s.renew_deadline {
                self.lost(&format!(
                    "the Lease was not renewed for {:?} (the renew deadline)",
                    s.renew_deadline
                ));
            }
        }
    }

    /// Releases the Lease for a shutdown, answers the request, and never returns: the caller
    /// exits once nothing acts any more.
    async fn give_up(&self, done: ReleaseRequest) -> ! {
        self.release().await;
        let _ = done.send(());
        let never: std::convert::Infallible = std::future::pending().await;
        match never {}
    }

    /// Stops acting at once: the process ends, before the Lease can expire for any standby.
    fn lost(&self, why: &str) -> ! {
        self.metrics.leader.set(0);
        tracing::error!(identity = %self.settings.identity, "leader election: lost the Lease ({why}); exiting so that nothing of this term acts again");
        eprintln!("cvs-operator: lost the leader election Lease ({why}); exiting");
        std::process::exit(i32::from(EXIT_LEASE_LOST));
    }

    /// Gives the Lease up, if it is still ours, so a standby takes over at once.
    async fn release(&self) {
        let result = async {
            let Some(lease) = self.get().await? else {
                return Ok(false);
            };
            let spec = lease.spec.clone().unwrap_or_default();
            if holder(&spec) != Some(self.settings.identity.as_str()) {
                return Ok(false);
            }
            self.write(Some(&lease), released(&spec, jiff::Timestamp::now()))
                .await
                .map(|stored| stored.is_some())
        }
        .await;
        self.metrics.leader.set(0);
        self.status.set_role(Role::Standby { leader: None });
        match result {
            Ok(true) => tracing::info!("leader election: released the Lease"),
            Ok(false) => tracing::warn!("leader election: the Lease was no longer ours to release"),
            Err(e) => tracing::warn!(error = %e,
                "leader election: cannot release the Lease; a standby takes over when it expires"),
        }
    }

    /// Records who leads as an Event on the Lease (best effort).
    async fn announce(&self) {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("coordination.k8s.io/v1".into()),
            kind: Some("Lease".into()),
            name: Some(self.settings.lease_name.clone()),
            namespace: Some(self.settings.namespace.clone()),
            ..Default::default()
        };
        let event = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Normal,
            reason: "LeaderElection".into(),
            note: Some(format!("{} became the leader", self.settings.identity)),
            action: "Acquire".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::debug!(error = %e, "cannot record the LeaderElection Event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(identity: &str) -> Settings {
        Settings {
            namespace: "ns".into(),
            lease_name: "cvs-operator".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn held_by(holder: &str, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            renew_time: Some(MicroTime(jiff::Timestamp::UNIX_EPOCH)),
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    fn wall() -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn another_holders_lease_is_taken_only_after_it_stopped_changing_for_its_duration() {
        let me = settings("b");
        let t0 = Instant::now();
        let seen = observe(None, held_by("a", 15), t0);
        match plan(&seen, &me, t0 + Duration::from_secs(14), wall()) {
            Plan::Follow { holder, until } => {
                assert_eq!(holder, "a");
                assert_eq!(until, t0 + Duration::from_secs(15));
            }
            other => panic!("{other:?}"),
        }
        // A renewal seen later moves the expiry.
        let mut renewed_spec = held_by("a", 15);
        renewed_spec.renew_time = Some(MicroTime(wall()));
        let t1 = t0 + Duration::from_secs(10);
        let seen = observe(Some(&seen), renewed_spec, t1);
        assert_eq!(seen.changed_at, t1);
        assert!(matches!(
            plan(&seen, &me, t0 + Duration::from_secs(16), wall()),
            Plan::Follow { .. }
        ));
        // The same record read again does not.
        let again = observe(Some(&seen), seen.spec.clone(), t1 + Duration::from_secs(5));
        assert_eq!(again.changed_at, t1);
        match plan(&again, &me, t1 + Duration::from_secs(15), wall()) {
            Plan::Write(spec) => {
                assert_eq!(spec.holder_identity.as_deref(), Some("b"));
                assert_eq!(spec.lease_transitions, Some(4));
                assert_eq!(spec.lease_duration_seconds, Some(15));
                assert_eq!(spec.acquire_time, Some(MicroTime(wall())));
            }
            other => panic!("{other:?}"),
        }
    }

    /// Expiry is judged by the candidate's own clock from when it saw the record change, never
    /// from `renewTime`: a record whose renewTime is far in the past (a skewed clock) is not
    /// taken while it still changes.
    #[test]
    fn the_wall_clock_in_the_record_does_not_decide_expiry() {
        let me = settings("b");
        let t0 = Instant::now();
        let seen = observe(None, held_by("a", 15), t0);
        assert!(matches!(
            plan(&seen, &me, t0 + Duration::from_secs(1), wall()),
            Plan::Follow { .. }
        ));
    }

    #[test]
    fn a_released_or_unheld_lease_is_taken_at_once() {
        let me = settings("b");
        let t0 = Instant::now();
        for spec in [
            LeaseSpec::default(),
            released(&held_by("a", 15), wall()),
            LeaseSpec {
                holder_identity: Some(String::new()),
                ..held_by("a", 15)
            },
        ] {
            let seen = observe(None, spec, t0);
            match plan(&seen, &me, t0, wall()) {
                Plan::Write(s) => assert_eq!(s.holder_identity.as_deref(), Some("b")),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn our_own_lease_is_renewed_keeping_its_acquire_time_and_transitions() {
        let me = settings("a");
        let mut spec = held_by("a", 15);
        spec.acquire_time = Some(MicroTime(jiff::Timestamp::UNIX_EPOCH));
        let t0 = Instant::now();
        match plan(&observe(None, spec, t0), &me, t0, wall()) {
            Plan::Write(s) => {
                assert_eq!(s.acquire_time, Some(MicroTime(jiff::Timestamp::UNIX_EPOCH)));
                assert_eq!(s.renew_time, Some(MicroTime(wall())));
                assert_eq!(s.lease_transitions, Some(3));
            }
            other => panic!("{other:?}"),
        }
    }

    /// The leader renews only the record it wrote itself; anything else means another process
    /// may be acting, and the leader stops.
    #[test]
    fn a_leader_renews_only_its_own_unchanged_record() {
        let me = settings("a");
        let mine = held_by("a", 15);
        let next = renewal(Some(&mine), &mine, &me, wall()).unwrap();
        assert_eq!(next.renew_time, Some(MicroTime(wall())));
        assert_eq!(next.holder_identity.as_deref(), Some("a"));
        let why = renewal(None, &mine, &me, wall()).unwrap_err();
        assert!(why.contains("deleted"), "{why}");
        let why = renewal(Some(&held_by("b", 15)), &mine, &me, wall()).unwrap_err();
        assert!(why.contains("held by b"), "{why}");
        let why = renewal(Some(&released(&mine, wall())), &mine, &me, wall()).unwrap_err();
        assert!(why.contains("released"), "{why}");
        // Our identity, but a renewal we did not write: a second process with our name.
        let mut twin = mine.clone();
        twin.renew_time = Some(MicroTime(wall()));
        let why = renewal(Some(&twin), &mine, &me, wall()).unwrap_err();
        assert!(why.contains("this identity"), "{why}");
    }

    #[test]
    fn hostile_durations_in_the_record_are_bounded() {
        let me = settings("b");
        let t0 = Instant::now();
        // Zero or negative: one second.
        for d in [0, -5, i32::MIN] {
            let seen = observe(None, held_by("a", d), t0);
            assert!(matches!(
                plan(&seen, &me, t0 + Duration::from_millis(999), wall()),
                Plan::Follow { .. }
            ));
            assert!(matches!(
                plan(&seen, &me, t0 + Duration::from_secs(1), wall()),
                Plan::Write(_)
            ));
        }
        // Huge or missing: an hour, not forever.
        for d in [Some(i32::MAX), None] {
            let spec = LeaseSpec {
                lease_duration_seconds: d,
                ..held_by("a", 1)
            };
            let seen = observe(None, spec, t0);
            assert!(matches!(
                plan(&seen, &me, t0 + Duration::from_secs(3599), wall()),
                Plan::Follow { .. }
            ));
            assert!(matches!(
                plan(&seen, &me, t0 + Duration::from_secs(3600), wall()),
                Plan::Write(_)
            ));
        }
        // A negative transition count starts again from 0.
        let spec = LeaseSpec {
            lease_transitions: Some(-7),
            ..held_by("a", 1)
        };
        assert_eq!(taken(&spec, &me, wall()).lease_transitions, Some(1));
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(settings("a").validate(), Ok(()));
        let mut s = settings("a");
        s.namespace.clear();
        assert_eq!(s.validate(), Err(SettingsError::NoNamespace));
        let mut s = settings("");
        s.identity.clear();
        assert_eq!(s.validate(), Err(SettingsError::NoIdentity));
        let mut s = settings("a");
        s.renew_deadline = s.lease_duration;
        assert!(matches!(s.validate(), Err(SettingsError::Timings { .. })));
        let mut s = settings("a");
        s.retry_period = s.renew_deadline;
        assert!(matches!(s.validate(), Err(SettingsError::Timings { .. })));
        let mut s = settings("a");
        s.lease_duration = Duration::from_millis(1500);
        s.renew_deadline = Duration::from_secs(1);
        s.retry_period = Duration::from_millis(200);
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.record_seconds(), 2, "rounded up, never shorter");
    }

    #[test]
    fn a_standby_is_ready_while_it_follows_the_lease() {
        let now = Instant::now();
        let mut f = StatusFacts {
            enabled: true,
            role: Some(Role::Starting),
            stale_after: Duration::from_secs(15),
            ..Default::default()
        };
        assert!(matches!(standby_readiness(&f, now), Some(Err(_))));
        f.role = Some(Role::Standby {
            leader: Some("a".into()),
        });
        f.last_read = Some(now);
        assert_eq!(
            standby_readiness(&f, now + Duration::from_secs(15)),
            Some(Ok("standby; the leader is a".into()))
        );
        f.last_error = Some("connection refused".into());
        let why = standby_readiness(&f, now + Duration::from_secs(16))
            .unwrap()
            .unwrap_err();
        assert!(why.contains("connection refused"), "{why}");
        f.role = Some(Role::Leader);
        assert_eq!(standby_readiness(&f, now), None);
        assert_eq!(standby_readiness(&StatusFacts::default(), now), None);
    }
}
