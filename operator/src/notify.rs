//! SNS events: one message per change of an instance's health or open state. Publishing runs
//! in a background worker with a bounded queue and retries with backoff, so a slow or failing SNS
//! never blocks probing or state-table writes.

use crate::metrics::Metrics;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Version of the event JSON; bump on an incompatible change.
pub const SCHEMA_VERSION: u32 = 1;
/// Events waiting at most; past it new events are dropped and counted.
pub const QUEUE_CAPACITY: usize = 10_000;

/// The state an event reports, before or after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceState {
    pub open: bool,
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

/// The JSON body of an event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceEvent {
    pub schema_version: u32,
    /// `HealthChanged`, `OpenChanged`, `HealthAndOpenChanged` or `InstanceRegistered`.
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// Per instance, only increases (the state-table item's version).
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
    /// RFC 3339, millisecond precision.
    pub timestamp: String,
}

impl InstanceEvent {
    /// The event type for a change from `old` to `new`, or `None` when neither health nor open
    /// state changed (no event).
    pub fn type_for(old: Option<&InstanceState>, new: &InstanceState) -> Option<&'static str> {
        let Some(old) = old else {
            return Some("InstanceRegistered");
        };
        let health = old.healthy.unwrap_or(true) != new.healthy.unwrap_or(true);
        match (health, old.open != new.open) {
            (true, true) => Some("HealthAndOpenChanged"),
            (true, false) => Some("HealthChanged"),
            (false, true) => Some("OpenChanged"),
            (false, false) => None,
        }
    }
}

struct Outgoing {
    topic_arn: String,
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
    pub dropped: u64,
    pub last_error: Option<String>,
}

/// Enqueues events and reports delivery.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Outgoing>,
    delivery: Arc<Mutex<HashMap<String, Delivery>>>,
    /// The highest sequence queued in this process, by domain: an event still waiting here is
    /// not replayed from the table.
    queued: Arc<Mutex<HashMap<String, u64>>>,
    metrics: Arc<Metrics>,
}

/// The region in an SNS topic ARN (`arn:aws:sns:REGION:ACCOUNT:NAME`).
pub fn topic_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

impl Notifier {
    /// Starts the publishing worker; it runs until the process ends.
    pub fn start(sdk: aws_config::SdkConfig, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let delivery = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(worker(rx, sdk, delivery.clone(), metrics.clone()));
        Self {
            tx,
            delivery,
            queued: Default::default(),
            metrics,
        }
    }

    /// Whether an event of `domain` with this sequence (or a later one) was queued by this
    /// process.
    pub fn queued(&self, domain: &str, sequence: u64) -> bool {
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(domain)
            .is_some_and(|&q| q >= sequence)
    }

    /// Queues an event for `topic_arn`; never waits. Once SNS has taken it, `ack` (if any) is
    /// recorded in the state table.
    pub fn publish(&self, topic_arn: &str, event: &InstanceEvent, ack: Option<Ack>) {
        let body = match serde_json::to_string(event) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize an event");
                return;
            }
        };
        let out = Outgoing {
            topic_arn: topic_arn.to_owned(),
            cluster: event.cluster.clone(),
            region: event.region.clone(),
            type_: event.type_,
            body,
            ack,
        };
        {
            let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
            let q = queued.entry(event.domain.clone()).or_default();
            *q = (*q).max(event.sequence);
        }
        let cluster = event.cluster.clone();
        let mut delivery = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        let d = delivery.entry(cluster).or_default();
        match self.tx.try_send(out) {
            Ok(()) => d.pending += 1,
            Err(_) => {
                d.dropped += 1;
                self.metrics.sns_dropped.inc();
                tracing::warn!("SNS event queue is full; event dropped");
            }
        }
    }

    /// Delivery state of one ClusteredStream (`namespace/name`).
    pub fn delivery(&self, cluster: &str) -> Delivery {
        self.delivery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(cluster)
            .cloned()
            .unwrap_or_default()
    }
}

async fn worker(
    mut rx: mpsc::Receiver<Outgoing>,
    sdk: aws_config::SdkConfig,
    delivery: Arc<Mutex<HashMap<String, Delivery>>>,
    metrics: Arc<Metrics>,
) {
    let mut clients: HashMap<String, aws_sdk_sns::Client> = HashMap::new();
    while let Some(out) = rx.recv().await {
        let region = topic_region(&out.topic_arn)
            .unwrap_or("us-east-1")
            .to_owned();
        let client = clients
            .entry(region.clone())
            .or_insert_with(|| {
                let conf = aws_sdk_sns::config::Builder::from(&sdk)
                    .region(aws_config::Region::new(region))
                    .build();
                aws_sdk_sns::Client::from_conf(conf)
            })
            .clone();
        let mut backoff = Duration::from_millis(200);
        // Events are delivered in order: the worker keeps retrying the oldest one.
        loop {
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
                break;
            };
            let result = client
                .publish()
                .topic_arn(&out.topic_arn)
                .message(&out.body)
                .message_attributes("cluster", cluster)
                .message_attributes("region", region)
                .message_attributes("type", type_)
                .send()
                .await;
            let delivered = {
                let mut d = delivery.lock().unwrap_or_else(|p| p.into_inner());
                let entry = d.entry(out.cluster.clone()).or_default();
                match result {
                    Ok(_) => {
                        entry.pending = entry.pending.saturating_sub(1);
                        entry.delivered += 1;
                        entry.last_error = None;
                        metrics.sns_published.inc();
                        true
                    }
                    Err(e) => {
                        let msg = aws_sdk_sns::error::DisplayErrorContext(&e).to_string();
                        metrics.sns_failures.inc();
                        if entry.last_error.is_none() {
                            tracing::warn!(error = %msg, "publishing to SNS failed; retrying with backoff");
                        }
                        entry.last_error = Some(msg);
                        false
                    }
                }
            };
            if delivered {
                if let Some(ack) = out.ack {
                    // Off the publishing path: a slow table must not hold up the next event.
                    tokio::spawn(async move {
                        if let Err(e) = ack.table.mark_announced(&ack.domain, ack.version).await {
                            tracing::warn!(domain = %ack.domain, version = ack.version, error = %e,
                                "cannot record an event as delivered; it may be sent again after a restart");
                        }
                    });
                }
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
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
        assert_eq!(
            InstanceEvent::type_for(Some(&st(true, None)), &st(true, Some(true))),
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
            schema_version: SCHEMA_VERSION,
            type_: "OpenChanged",
            sequence: 4,
            cluster: "live/event".into(),
            instance: "live/event-us-east-1".into(),
            region: "us-east-1".into(),
            domain: "d1.cloudfront.net".into(),
            old: Some(st(true, Some(true))),
            new: st(false, Some(true)),
            reason: "DesiredClosed".into(),
            renditions: vec![],
            timestamp: "2026-11-24T10:00:00.123Z".into(),
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
}
