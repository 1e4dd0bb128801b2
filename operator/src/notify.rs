//! SNS events: one message per change of an instance's health or open state. Each topic has its
//! own bounded queue and publishing task, so one topic that fails (for good or for a while)
//! never holds up another's events, and a slow or failing SNS never blocks probing or
//! state-table writes.
//!
//! Failures are classified: a transient one (throttling, a 5xx, the network) is retried with
//! backoff, in order; one that means the topic cannot be used (`NotFound`, `AuthorizationError`,
//! a KMS key refused, ...) parks the topic: its events wait (within the bound) and are tried
//! again every [`PARKED_RETRY`], and the ClusteredStream says why; one that refuses this message
//! only (`InvalidParameter`) drops that event (its gap shows in `sequence`).

use crate::metrics::Metrics;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Version of the event JSON; bump on an incompatible change.
pub const SCHEMA_VERSION: u32 = 1;
/// Events waiting at most per topic; past it new events are dropped and counted.
pub const QUEUE_CAPACITY: usize = 1_000;
/// The largest message body sent. SNS accepts 256 KiB for the body and attributes together;
/// the attributes this operator sets take well under the margin left.
pub const MAX_BODY_BYTES: usize = 256 * 1024 - 8 * 1024;
/// How often a parked topic (one SNS refused for good) is tried again.
pub const PARKED_RETRY: Duration = Duration::from_secs(60);
/// Longest pause between retries of a transient failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The state an event reports, before or after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceState {
    pub open: bool,
    /// `null` while the instance has not been judged yet.
    pub healthy: Option<bool>,
}

/// One rendition in an event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenditionDetail {
    pub uri: String,
    pub fresh: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// How many renditions an event stands for when its `renditions` list had to be shortened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenditionsSummary {
    pub total: usize,
    pub fresh: usize,
    pub stale: usize,
    /// Renditions left out of `renditions` (fresh ones first).
    pub omitted: usize,
}

/// The JSON body of an event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceEvent {
    pub schema_version: u32,
    /// `HealthChanged`, `OpenChanged`, `HealthAndOpenChanged`, `InstanceRegistered` or
    /// `ItemRepaired` (a malformed state-table item was rewritten; `old` is `null`).
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// Per instance: the item's `event_seq`, one more for every change of health or open state,
    /// so a gap means an event was lost.
    pub sequence: u64,
    /// `namespace/name` of the ClusteredStream.
    pub cluster: String,
    /// `namespace/name` of the StreamInstance.
    pub instance: String,
    pub region: String,
    pub domain: String,
    pub old: Option<InstanceState>,
    pub new: InstanceState,
    pub reason: String,
    pub renditions: Vec<RenditionDetail>,
    /// Present only when `renditions` was shortened to fit SNS's message size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renditions_summary: Option<RenditionsSummary>,
    /// RFC 3339, millisecond precision.
    pub timestamp: String,
}

impl InstanceEvent {
    /// The event type for a change from `old` to `new`, or `None` when neither health nor open
    /// state changed (no event). Health not judged yet is a state of its own: a first verdict
    /// is a `HealthChanged`.
    pub fn type_for(old: Option<&InstanceState>, new: &InstanceState) -> Option<&'static str> {
        let Some(old) = old else {
            return Some("InstanceRegistered");
        };
        let health = old.healthy != new.healthy;
        match (health, old.open != new.open) {
            (true, true) => Some("HealthAndOpenChanged"),
            (true, false) => Some("HealthChanged"),
            (false, true) => Some("OpenChanged"),
            (false, false) => None,
        }
    }

    /// The JSON body, at most `limit` bytes: when the full detail is larger, `renditions`
    /// keeps the stale renditions first, as many as fit, and `renditionsSummary` counts them
    /// all. `None` only if even the summary alone does not fit.
    pub fn body_within(&self, limit: usize) -> Option<String> {
        let full = serde_json::to_string(self).ok()?;
        if full.len() <= limit {
            return Some(full);
        }
        let total = self.renditions.len();
        let fresh = self.renditions.iter().filter(|r| r.fresh).count();
        let mut short = self.clone();
        short.renditions = Vec::new();
        short.renditions_summary = Some(RenditionsSummary {
            total,
            fresh,
            stale: total - fresh,
            omitted: total,
        });
        // Long enough for any `omitted` count.
        let base = serde_json::to_string(&short).ok()?.len() + 20;
        let mut ordered: Vec<&RenditionDetail> = self.renditions.iter().collect();
        ordered.sort_by_key(|r| r.fresh);
        let mut size = base;
        for r in ordered {
            let len = serde_json::to_string(r).map_or(usize::MAX, |s| s.len());
            size = size.saturating_add(len).saturating_add(1);
            if size > limit {
                break;
            }
            short.renditions.push(r.clone());
        }
        if let Some(s) = short.renditions_summary.as_mut() {
            s.omitted = total - short.renditions.len();
        }
        let body = serde_json::to_string(&short).ok()?;
        (body.len() <= limit).then_some(body)
    }
}

/// What a failed publish means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Retry with backoff.
    Transient,
    /// The topic cannot be used until someone fixes it (or its ARN): park it.
    Topic,
    /// SNS refuses this message; retrying it cannot help.
    Message,
}

/// Classifies an SNS error by its code (`None`: no service error, e.g. the network).
pub fn classify(code: Option<&str>) -> Failure {
    match code {
        Some(
            "NotFound"
            | "NotFoundException"
            | "AuthorizationError"
            | "AuthorizationErrorException"
            | "InvalidSecurity"
            | "InvalidSecurityException"
            | "KMSAccessDenied"
            | "KMSAccessDeniedException"
            | "KMSDisabled"
            | "KMSDisabledException"
            | "KMSInvalidState"
            | "KMSInvalidStateException"
            | "KMSNotFound"
            | "KMSNotFoundException"
            | "KMSOptInRequired"
            | "EndpointDisabled"
            | "InvalidClientTokenId"
            | "AccessDenied"
            | "AccessDeniedException"
            | "UnrecognizedClientException",
        ) => Failure::Topic,
        Some(
            "InvalidParameter"
            | "InvalidParameterException"
            | "InvalidParameterValue"
            | "InvalidParameterValueException"
            | "ValidationError",
        ) => Failure::Message,
        _ => Failure::Transient,
    }
}

struct Outgoing {
    cluster: String,
    region: String,
    type_: &'static str,
    body: String,
    ack: Option<Ack>,
}

/// Where to record that an event was delivered: the state-table item it reports.
pub struct Ack {
    pub table: crate::state::StateTable,
    pub domain: String,
    pub version: u64,
}

/// Delivery state per ClusteredStream, for its status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub pending: u64,
    pub delivered: u64,
    /// Events lost in this process: the queue was full, or SNS refused the message.
    pub dropped: u64,
    /// Events were lost and delivery has not caught up since (nothing waiting, and an event
    /// delivered after the loss). The changes they reported stay owed in the table and are
    /// announced again when their items are next read.
    pub dropped_recently: bool,
    /// The last transient failure, while it lasts.
    pub last_error: Option<String>,
    /// The topic is parked: SNS refuses it for good until this is fixed.
    pub parked: Option<String>,
}

struct TopicQueue {
    tx: mpsc::Sender<Outgoing>,
    stop: Arc<AtomicBool>,
}

/// Enqueues events and reports delivery.
#[derive(Clone)]
pub struct Notifier {
    sdk: aws_config::SdkConfig,
    topics: Arc<Mutex<HashMap<String, TopicQueue>>>,
    delivery: Arc<Mutex<HashMap<String, Delivery>>>,
    /// The highest sequence queued in this process, by (cluster, domain): an event still
    /// waiting here is not replayed from the table.
    queued: Arc<Mutex<HashMap<(String, String), u64>>>,
    metrics: Arc<Metrics>,
    /// Every publishing task and delivery record, so a shutdown can wait for them.
    tasks: tokio_util::task::TaskTracker,
}

/// The region in an SNS topic ARN (`arn:aws:sns:REGION:ACCOUNT:NAME`).
pub fn topic_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Notifier {
    /// A notifier; each topic's publishing task starts with its first event.
    pub fn start(sdk: aws_config::SdkConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            sdk,
            topics: Default::default(),
            delivery: Default::default(),
            queued: Default::default(),
            metrics,
            tasks: Default::default(),
        }
    }

    /// Stops publishing, for a shutdown or a handover to another replica: each topic's task
    /// sends the events already queued, in order, and records their delivery, then ends.
    /// Waits at most `within`, then stops the tasks (false: something was still unsent; those
    /// changes stay owed in the table, and whoever reads the items next announces the last
    /// change of each with its original sequence).
    pub async fn shutdown(&self, within: Duration) -> bool {
        // Dropping the senders lets each worker empty its queue and end.
        let stops: Vec<Arc<AtomicBool>> = lock(&self.topics)
            .drain()
            .map(|(_, queue)| queue.stop)
            .collect();
        self.tasks.close();
        let finished = tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_ok();
        for stop in stops {
            stop.store(true, Ordering::Relaxed);
        }
        finished
    }

    /// Whether an event of `domain` (in `cluster`) with this sequence (or a later one) is
    /// queued or was delivered by this process.
    pub fn queued(&self, cluster: &str, domain: &str, sequence: u64) -> bool {
        lock(&self.queued)
            .get(&(cluster.to_owned(), domain.to_owned()))
            .is_some_and(|&q| q >= sequence)
    }

    /// Queues an event for `topic_arn`; never waits. Once SNS has taken it, `ack` (if any) is
    /// recorded in the state table. An event that finds its topic's queue full is dropped and
    /// counted (never recorded as queued, so it is announced again from the table).
    pub fn publish(&self, topic_arn: &str, event: &InstanceEvent, ack: Option<Ack>) {
        let Some(body) = event.body_within(MAX_BODY_BYTES) else {
            tracing::error!(domain = %event.domain, "an event cannot be made small enough for SNS; dropped");
            self.dropped(&event.cluster);
            return;
        };
        let out = Outgoing {
            cluster: event.cluster.clone(),
            region: event.region.clone(),
            type_: event.type_,
            body,
            ack,
        };
        let sent = {
            let mut topics = lock(&self.topics);
            let queue = topics
                .entry(topic_arn.to_owned())
                .or_insert_with(|| self.spawn(topic_arn));
            // Counted before the worker can take it.
            lock(&self.delivery)
                .entry(event.cluster.clone())
                .or_default()
                .pending += 1;
            queue.tx.try_send(out).is_ok()
        };
        if sent {
            let mut queued = lock(&self.queued);
            let q = queued
                .entry((event.cluster.clone(), event.domain.clone()))
                .or_default();
            *q = (*q).max(event.sequence);
        } else {
            {
                let mut d = lock(&self.delivery);
                let entry = d.entry(event.cluster.clone()).or_default();
                entry.pending = entry.pending.saturating_sub(1);
            }
            tracing::warn!(
                topic = topic_arn,
                "SNS event queue of this topic is full; event dropped"
            );
            self.dropped(&event.cluster);
        }
    }

    fn dropped(&self, cluster: &str) {
        let mut d = lock(&self.delivery);
        let entry = d.entry(cluster.to_owned()).or_default();
        entry.dropped += 1;
        entry.dropped_recently = true;
        self.metrics.sns_dropped.inc();
    }

    fn spawn(&self, topic_arn: &str) -> TopicQueue {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let stop = Arc::new(AtomicBool::new(false));
        let region = topic_region(topic_arn).unwrap_or("us-east-1").to_owned();
        let conf = aws_sdk_sns::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(region))
            .build();
        self.tasks.spawn(worker(
            topic_arn.to_owned(),
            rx,
            aws_sdk_sns::Client::from_conf(conf),
            self.delivery.clone(),
            self.metrics.clone(),
            stop.clone(),
            self.tasks.clone(),
        ));
        TopicQueue { tx, stop }
    }

    /// Delivery state of one ClusteredStream (`namespace/name`).
    pub fn delivery(&self, cluster: &str) -> Delivery {
        lock(&self.delivery)
            .get(cluster)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets what belongs to ClusteredStreams and topics that are gone: their delivery
    /// state, queued sequences, and the queues of topics no ClusteredStream names (their
    /// waiting events are dropped; the changes stay owed in the table).
    pub fn retain(&self, clusters: &BTreeSet<String>, topics: &BTreeSet<String>) {
        lock(&self.topics).retain(|arn, q| {
            let keep = topics.contains(arn);
            if !keep {
                q.stop.store(true, Ordering::Relaxed);
            }
            keep
        });
        lock(&self.delivery).retain(|c, _| clusters.contains(c));
        lock(&self.queued).retain(|(c, _), _| clusters.contains(c));
    }

    /// How many topic queues, delivery states and queued sequences are kept (for tests).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            lock(&self.topics).len(),
            lock(&self.delivery).len(),
            lock(&self.queued).len(),
        )
    }
}

async fn worker(
    topic_arn: String,
    mut rx: mpsc::Receiver<Outgoing>,
    client: aws_sdk_sns::Client,
    delivery: Arc<Mutex<HashMap<String, Delivery>>>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    tasks: tokio_util::task::TaskTracker,
) {
    use aws_sdk_sns::error::ProvideErrorMetadata;
    while let Some(out) = rx.recv().await {
        let mut backoff = Duration::from_millis(200);
        // Events are delivered in order: the worker keeps retrying the oldest one.
        let delivered = loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let attr = |v: &str| {
                aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()
            };
            let (Ok(cluster), Ok(region), Ok(type_)) =
                (attr(&out.cluster), attr(&out.region), attr(out.type_))
            else {
                tracing::error!("cannot build SNS message attributes; event dropped");
                break false;
            };
            let result = client
                .publish()
                .topic_arn(&topic_arn)
                .message(&out.body)
                .message_attributes("cluster", cluster)
                .message_attributes("region", region)
                .message_attributes("type", type_)
                .send()
                .await;
            let failure = match result {
                Ok(_) => break true,
                Err(e) => {
                    let class = classify(e.as_service_error().and_then(|s| s.code()));
                    (
                        class,
                        aws_sdk_sns::error::DisplayErrorContext(&e).to_string(),
                    )
                }
            };
            metrics.sns_failures.inc();
            let pause = {
                let mut d = lock(&delivery);
                let entry = d.entry(out.cluster.clone()).or_default();
                match failure.0 {
                    Failure::Message => {
                        tracing::error!(topic = %topic_arn, error = %failure.1, "SNS refused an event; dropped");
                        entry.dropped += 1;
                        entry.dropped_recently = true;
                        metrics.sns_dropped.inc();
                        None
                    }
                    Failure::Topic => {
                        if entry.parked.is_none() {
                            tracing::warn!(topic = %topic_arn, error = %failure.1,
                            "SNS refuses this topic; its events wait and are tried again every minute");
                        }
                        entry.parked = Some(failure.1);
                        entry.last_error = None;
                        Some(PARKED_RETRY)
                    }
                    Failure::Transient => {
                        if entry.last_error.is_none() {
                            tracing::warn!(topic = %topic_arn, error = %failure.1, "publishing to SNS failed; retrying with backoff");
                        }
                        entry.last_error = Some(failure.1);
                        entry.parked = None;
                        let pause = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        Some(pause)
                    }
                }
            };
            let Some(pause) = pause else {
                break false;
            };
            tokio::time::sleep(pause).await;
        };
        {
            let mut d = lock(&delivery);
            let entry = d.entry(out.cluster.clone()).or_default();
            entry.pending = entry.pending.saturating_sub(1);
            if delivered {
                entry.delivered += 1;
                entry.last_error = None;
                entry.parked = None;
                metrics.sns_published.inc();
                if entry.pending == 0 {
                    entry.dropped_recently = false;
                }
            }
        }
        if delivered && let Some(ack) = out.ack {
            // Off the publishing path: a slow table must not hold up the next event.
            tasks.spawn(async move {
                if let Err(e) = ack.table.mark_announced(&ack.domain, ack.version).await {
                    tracing::warn!(domain = %ack.domain, version = ack.version, error = %e,
                        "cannot record an event as delivered; it may be sent again after a restart");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(open: bool, healthy: Option<bool>) -> InstanceState {
        InstanceState { open, healthy }
    }

    #[test]
    fn event_types() {
        assert_eq!(
            InstanceEvent::type_for(None, &st(true, None)),
            Some("InstanceRegistered")
        );
        assert_eq!(
            InstanceEvent::type_for(Some(&st(true, Some(true))), &st(true, Some(true))),
            None
        );
        // A first verdict is news; an unknown health is never taken for fresh.
        assert_eq!(
            InstanceEvent::type_for(Some(&st(true, None)), &st(true, Some(true))),
            Some("HealthChanged")
        );
        assert_eq!(
            InstanceEvent::type_for(Some(&st(true, None)), &st(true, None)),
            None
        );
        assert_eq!(
            InstanceEvent::type_for(Some(&st(true, Some(true))), &st(true, Some(false))),
            Some("HealthChanged")
        );
        assert_eq!(
            InstanceEvent::type_for(Some(&st(true, Some(true))), &st(false, Some(true))),
            Some("OpenChanged")
        );
        assert_eq!(
            InstanceEvent::type_for(Some(&st(true, Some(true))), &st(false, Some(false))),
            Some("HealthAndOpenChanged")
        );
    }

    #[test]
    fn region_comes_from_the_topic_arn() {
        assert_eq!(
            topic_region("arn:aws:sns:eu-west-1:123456789012:events"),
            Some("eu-west-1")
        );
        assert_eq!(topic_region("nonsense"), None);
    }

    #[test]
    fn event_json_has_the_documented_fields() {
        let e = InstanceEvent {
            type_: "OpenChanged",
            new: st(false, Some(true)),
            reason: "DesiredClosed".into(),
            ..event(0, 0)
        };
        let v = serde_json::to_value(&e).unwrap();
        for k in [
            "schemaVersion",
            "type",
            "sequence",
            "cluster",
            "instance",
            "region",
            "domain",
            "old",
            "new",
            "reason",
            "renditions",
            "timestamp",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["new"]["open"], false);
    }

    fn event(renditions: usize, uri_len: usize) -> InstanceEvent {
        InstanceEvent {
            schema_version: SCHEMA_VERSION,
            type_: "HealthChanged",
            sequence: 4,
            cluster: "live/event".into(),
            instance: "live/event-us-east-1".into(),
            region: "us-east-1".into(),
            domain: "d1.cloudfront.net".into(),
            old: Some(st(true, Some(true))),
            new: st(true, Some(false)),
            reason: "DesiredOpen".into(),
            renditions: (0..renditions)
                .map(|i| RenditionDetail {
                    uri: format!("https://o.example.com/{}/{i}.m3u8", "x".repeat(uri_len)),
                    fresh: i % 3 != 0,
                    last_error: (i % 3 == 0).then(|| "no new segment".into()),
                })
                .collect(),
            renditions_summary: None,
            timestamp: "2026-11-24T10:00:00.123Z".into(),
        }
    }

    #[test]
    fn a_body_too_large_for_sns_is_summarised_stale_renditions_first() {
        let small = event(3, 10);
        assert_eq!(
            small.body_within(MAX_BODY_BYTES).unwrap(),
            serde_json::to_string(&small).unwrap()
        );
        // 300 renditions with long URIs: about 330 KB in full.
        let big = event(300, 1000);
        assert!(serde_json::to_string(&big).unwrap().len() > 256 * 1024);
        let body = big.body_within(MAX_BODY_BYTES).unwrap();
        assert!(body.len() <= MAX_BODY_BYTES, "{}", body.len());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let summary = &v["renditionsSummary"];
        assert_eq!(summary["total"], 300);
        assert_eq!(summary["stale"], 100);
        let kept = v["renditions"].as_array().unwrap();
        assert_eq!(
            summary["omitted"].as_u64().unwrap() as usize,
            300 - kept.len()
        );
        assert!(kept.len() >= 100, "every stale rendition fits");
        assert!(kept[..100].iter().all(|r| r["fresh"] == false));
        // Even absurd detail fits, as a summary.
        let huge = event(20_000, 2000);
        let body = huge.body_within(MAX_BODY_BYTES).unwrap();
        assert!(body.len() <= MAX_BODY_BYTES);
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(classify(Some("NotFound")), Failure::Topic);
        assert_eq!(classify(Some("AuthorizationError")), Failure::Topic);
        assert_eq!(classify(Some("KMSAccessDenied")), Failure::Topic);
        assert_eq!(classify(Some("InvalidParameter")), Failure::Message);
        assert_eq!(classify(Some("Throttling")), Failure::Transient);
        assert_eq!(classify(Some("InternalError")), Failure::Transient);
        assert_eq!(classify(None), Failure::Transient);
    }

    fn unreachable_sns() -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(aws_sdk_sns::config::SharedCredentialsProvider::new(
                aws_sdk_sns::config::Credentials::for_tests(),
            ))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    #[tokio::test]
    async fn an_event_that_does_not_fit_its_queue_is_never_recorded_as_queued() {
        let n = Notifier::start(unreachable_sns(), Arc::new(Metrics::default()));
        let topic = "arn:aws:sns:us-east-1:123456789012:t";
        let mut e = event(1, 1);
        // The worker holds the first one (retrying); the queue takes QUEUE_CAPACITY more.
        for seq in 1..=(QUEUE_CAPACITY as u64 + 5) {
            e.sequence = seq;
            n.publish(topic, &e, None);
        }
        let d = n.delivery("live/event");
        assert!(d.dropped >= 4 && d.dropped_recently, "{d:?}");
        assert!(n.queued("live/event", "d1.cloudfront.net", QUEUE_CAPACITY as u64));
        assert!(!n.queued("live/event", "d1.cloudfront.net", QUEUE_CAPACITY as u64 + 5));
        assert_eq!(d.pending + d.dropped, QUEUE_CAPACITY as u64 + 5);
        // Another topic has a queue of its own.
        let other = "arn:aws:sns:us-east-1:123456789012:other";
        let mut e2 = event(1, 1);
        e2.cluster = "team2/event".into();
        n.publish(other, &e2, None);
        assert_eq!(n.delivery("team2/event").dropped, 0);
        assert_eq!(n.sizes().0, 2);
        // A ClusteredStream and topic that are gone are forgotten.
        n.retain(
            &BTreeSet::from(["team2/event".to_owned()]),
            &BTreeSet::from([other.to_owned()]),
        );
        assert_eq!(n.sizes(), (1, 1, 1));
    }

    /// A shutdown (or a handover) sends what is already queued, in order, before it returns:
    /// nothing decided by this process is left for the next leader to replay out of order, or
    /// for this one to send after it gave up the Lease.
    #[tokio::test]
    async fn shutdown_sends_every_queued_event_then_stops() {
        use std::sync::atomic::AtomicUsize;
        let published = Arc::new(AtomicUsize::new(0));
        let counter = published.clone();
        // A slow SNS: each Publish takes 50 ms.
        let app = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                counter.fetch_add(1, Ordering::SeqCst);
                (
                    [("content-type", "text/xml")],
                    "<PublishResponse><PublishResult><MessageId>m</MessageId></PublishResult></PublishResponse>",
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let sdk = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(format!("http://{addr}"))
            .credentials_provider(aws_sdk_sns::config::SharedCredentialsProvider::new(
                aws_sdk_sns::config::Credentials::for_tests(),
            ))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let n = Notifier::start(sdk, Arc::new(Metrics::default()));
        let mut e = event(1, 1);
        for seq in 1..=5 {
            e.sequence = seq;
            n.publish("arn:aws:sns:us-east-1:123456789012:t", &e, None);
        }
        assert!(n.shutdown(Duration::from_secs(10)).await);
        assert_eq!(published.load(Ordering::SeqCst), 5);
        assert_eq!(n.delivery("live/event").delivered, 5);
        assert_eq!(n.sizes().0, 0, "no queue is left");
    }
}
