//! Kubernetes Events, sent by a few background workers rather than inside a reconciliation.
//!
//! An Event is one more API call. Sent inline it held a reconcile slot as long as the status
//! write before it: when a whole region failed, every one of its instances wrote a verdict and
//! then an Event, and the verdicts of the instances still waiting for a slot queued behind the
//! Events of the ones before them. Queued here, an Event leaves the slot free at once, and at most
//! [`EVENT_WORKERS`] Events are in flight, so status writes keep most of the API server's
//! attention while the Events follow.
//!
//! Events about one object keep the order they were sent in: each object is always served by
//! the same worker (by a hash of its namespace and name), and a worker sends one at a time.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;

/// Events in flight at once, one per worker.
pub const EVENT_WORKERS: usize = 4;
/// Events waiting per worker before a sender waits for room. A whole region failing at 10,000
/// playlists is about 700 instances, each with one Event for the fault and one for the heal.
pub const EVENT_QUEUE_PER_WORKER: usize = 1024;

type Queued = (ObjectReference, Event);

/// Sends Events in the background; see the module documentation.
pub struct EventQueue {
    /// None once [`EventQueue::shutdown`] began.
    workers: std::sync::Mutex<Option<Vec<mpsc::Sender<Queued>>>>,
    tasks: TaskTracker,
    metrics: Arc<Metrics>,
}

impl EventQueue {
    /// Starts the workers; they run until [`EventQueue::shutdown`].
    pub fn start(
        client: Client,
        recorder: Recorder,
        reporter: Reporter,
        metrics: Arc<Metrics>,
    ) -> Self {
        let tasks = TaskTracker::new();
        let workers = (0..EVENT_WORKERS)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<Queued>(EVENT_QUEUE_PER_WORKER);
                let (client, recorder, reporter, metrics) = (
                    client.clone(),
                    recorder.clone(),
                    reporter.clone(),
                    metrics.clone(),
                );
                tasks.spawn(async move {
                    while let Some((reference, event)) = rx.recv().await {
                        metrics.events_queued.dec();
                        super::record_reference(&client, &recorder, &reporter, reference, event)
                            .await;
                    }
                });
                tx
            })
            .collect();
        Self {
            workers: std::sync::Mutex::new(Some(workers)),
            tasks,
            metrics,
        }
    }

    /// Queues an Event about the object `reference` names. Waits only when that object's
    /// worker has [`EVENT_QUEUE_PER_WORKER`] Events waiting already (the API server has been
    /// refusing or stalling for a while); after shutdown began the Event is dropped and logged.
    pub async fn send(&self, reference: ObjectReference, event: Event) {
        let worker = {
            let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            workers
                .as_ref()
                .map(|w| w[worker_of(&reference, w.len())].clone())
        };
        let Some(worker) = worker else {
            tracing::info!(reason = %event.reason, object = ?reference.name, "shutting down; Event not sent");
            return;
        };
        self.metrics.events_queued.inc();
        if let Err(mpsc::error::SendError((_, event))) = worker.send((reference, event)).await {
            // The worker ended: only after shutdown began.
            self.metrics.events_queued.dec();
            tracing::info!(reason = %event.reason, "shutting down; Event not sent");
        }
    }

    /// Stops taking Events and sends the ones queued, waiting at most `within`; false when some
    /// were still unsent (they are lost: an Event is a report, the status holds the state).
    pub async fn shutdown(&self, within: Duration) -> bool {
        // Dropping the senders lets each worker empty its queue and end.
        drop(
            self.workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        self.tasks.close();
        tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_ok()
    }
}

/// The worker that serves every Event about the object `reference` names.
fn worker_of(reference: &ObjectReference, workers: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&reference.kind, &reference.namespace, &reference.name).hash(&mut hasher);
    // Lossless: the remainder is below `workers`, a usize.
    (hasher.finish() % workers.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::routing::post;
    use kube::runtime::events::EventType;

    /// An API server that takes Events, each only once `gate` gives it a permit, and keeps
    /// (object name, reason) in the order the Events arrived.
    struct FakeApi {
        gate: Arc<tokio::sync::Semaphore>,
        seen: Arc<std::sync::Mutex<Vec<(String, String)>>>,
        client: Client,
    }

    async fn fake_api() -> FakeApi {
        type Shared = (
            Arc<tokio::sync::Semaphore>,
            Arc<std::sync::Mutex<Vec<(String, String)>>>,
        );
        async fn create(
            State((gate, seen)): State<Shared>,
            Path(_ns): Path<String>,
            body: bytes::Bytes,
        ) -> (StatusCode, [(&'static str, &'static str); 1], bytes::Bytes) {
            gate.acquire().await.unwrap().forget();
            let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let name = event["regarding"]["name"].as_str().unwrap_or_default();
            let reason = event["reason"].as_str().unwrap_or_default();
            seen.lock().unwrap().push((name.into(), reason.into()));
            (
                StatusCode::CREATED,
                [("content-type", "application/json")],
                body,
            )
        }
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route(
                "/apis/events.k8s.io/v1/namespaces/{ns}/events",
                post(create),
            )
            .with_state((gate.clone(), seen.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client =
            Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
        FakeApi { gate, seen, client }
    }

    fn queue(api: &FakeApi, metrics: Arc<Metrics>) -> EventQueue {
        let reporter = Reporter {
            controller: "test".into(),
            instance: None,
        };
        let recorder = Recorder::new(api.client.clone(), reporter.clone());
        EventQueue::start(api.client.clone(), recorder, reporter, metrics)
    }

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("cvs.dev/v1alpha1".into()),
            kind: Some("StreamInstance".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    fn event(reason: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some("note".into()),
            action: "Probe".into(),
            secondary: None,
        }
    }

    /// A hang guard, not a measurement: each call it wraps returns at once when it works.
    const HANG: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn events_are_queued_without_waiting_for_the_api_server_and_keep_their_order() {
        let api = fake_api().await;
        let metrics = Arc::new(Metrics::default());
        let events = queue(&api, metrics.clone());
        let objects: Vec<String> = (0..12).map(|i| format!("instance-{i}")).collect();
        // The API server holds every request: a send still returns.
        for round in 0..5 {
            for object in &objects {
                tokio::time::timeout(
                    HANG,
                    events.send(reference(object), event(&format!("R{round}"))),
                )
                .await
                .expect("a send waited for the API server");
            }
        }
        assert!(api.seen.lock().unwrap().is_empty());
        assert!(metrics.events_queued.get() >= 60 - EVENT_WORKERS as i64);

        api.gate.add_permits(1000);
        assert!(
            events.shutdown(HANG).await,
            "queued Events were not all sent"
        );
        let seen = api.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 60);
        for object in &objects {
            let reasons: Vec<&str> = seen
                .iter()
                .filter(|(o, _)| o == object)
                .map(|(_, r)| r.as_str())
                .collect();
            assert_eq!(reasons, ["R0", "R1", "R2", "R3", "R4"], "{object}");
        }
        assert_eq!(metrics.events_queued.get(), 0);
        // The objects were spread over more than one worker.
        let used: std::collections::HashSet<usize> = objects
            .iter()
            .map(|o| worker_of(&reference(o), EVENT_WORKERS))
            .collect();
        assert!(used.len() > 1, "{used:?}");
    }

    #[tokio::test]
    async fn shutdown_gives_up_on_a_hung_api_server_and_later_events_are_dropped() {
        let api = fake_api().await;
        let metrics = Arc::new(Metrics::default());
        let events = queue(&api, metrics.clone());
        events.send(reference("a"), event("Stale")).await;
        assert!(!events.shutdown(Duration::from_millis(200)).await);
        tokio::time::timeout(HANG, events.send(reference("a"), event("Healthy")))
            .await
            .expect("a send after shutdown waited");
        api.gate.add_permits(10);
        // The Event in flight at shutdown may still land; the one sent after never does.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let seen = api.seen.lock().unwrap().clone();
        assert!(seen.iter().all(|(_, r)| r == "Stale"), "{seen:?}");
    }
}
