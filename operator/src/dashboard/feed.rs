//! What the dashboard shows, kept current from the operator's own memory: the controllers'
//! caches of ClusteredStreams and StreamInstances (or, on a standby, the dashboard's own), the
//! probe engine's per-rendition state (the leader), and the timeline. One task builds the
//! snapshot, serializes it once and publishes it through a `watch` channel that every viewer
//! reads: the number of open pages changes nothing for the API server.

use super::snapshot::{self, Inputs};
use super::timeline::{Entry, Timeline};
use crate::controller::leader;
use crate::probe::ProbeEngine;
use crate::resources::{ClusteredStream, StreamInstance};
use bytes::Bytes;
use futures::FutureExt;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Shortest time between two snapshots: bursts of changes are coalesced into one message.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// A snapshot is built at least this often, so rendition ages move on the page.
pub const MAX_INTERVAL: Duration = Duration::from_secs(1);

/// The snapshot as every viewer receives it, serialized once.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The snapshot JSON (`GET /api/state`).
    pub json: Bytes,
    /// The same as one server-sent event (`event: state`).
    pub sse: Bytes,
}

impl Frame {
    pub fn new(json: Vec<u8>) -> Self {
        let mut sse = Vec::with_capacity(json.len() + 24);
        sse.extend_from_slice(b"event: state\ndata: ");
        sse.extend_from_slice(&json);
        sse.extend_from_slice(b"\n\n");
        Self {
            json: Bytes::from(json),
            sse: Bytes::from(sse),
        }
    }
}

#[derive(Clone)]
struct Source {
    instances: Store<StreamInstance>,
    clusters: Store<ClusteredStream>,
    probes: Option<Arc<ProbeEngine>>,
    /// The dashboard's own watches (a standby's), stopped when the controllers' caches arrive.
    own: Option<Arc<tokio::task::AbortHandle>>,
}

#[derive(Default)]
struct Inner {
    timeline: Mutex<Timeline>,
    source: Mutex<Option<Source>>,
    poke: Notify,
}

/// The dashboard's inputs, shared with the controllers. Cheap to clone; recording into it
/// costs a lock and a bounded push, with or without a dashboard.
#[derive(Clone, Default)]
pub struct Feed(Arc<Inner>);

impl Feed {
    /// Adds a transition to the timeline of ClusteredStream `cluster` (`namespace/name`).
    pub fn record(&self, cluster: &str, entry: Entry) {
        self.0
            .timeline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(cluster, entry);
        self.poke();
    }

    /// Asks for a new snapshot (at most one per [`MIN_INTERVAL`]).
    pub fn poke(&self) {
        self.0.poke.notify_one();
    }

    /// The controllers' caches and the probe engine, from a process that leads. Any watches
    /// the dashboard ran on its own are stopped.
    pub fn attach(
        &self,
        instances: Store<StreamInstance>,
        clusters: Store<ClusteredStream>,
        probes: Option<Arc<ProbeEngine>>,
    ) {
        let previous = self
            .0
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Source {
                instances,
                clusters,
                probes,
                own: None,
            });
        if let Some(own) = previous.and_then(|p| p.own) {
            own.abort();
        }
        self.poke();
    }

    /// Watches both kinds for the dashboard alone, until [`Feed::attach`] is called: what a
    /// standby replica shows (the status the leader writes). Two watches per replica, however
    /// many pages are open.
    pub fn watch_alone(&self, client: kube::Client, namespace: Option<&str>) {
        use kube::runtime::{WatchStreamExt, reflector, watcher};
        let (instances, iw) = reflector::store::<StreamInstance>();
        let (clusters, cw) = reflector::store::<ClusteredStream>();
        let (ia, ca): (kube::Api<StreamInstance>, kube::Api<ClusteredStream>) = match namespace {
            Some(ns) => (
                kube::Api::namespaced(client.clone(), ns),
                kube::Api::namespaced(client, ns),
            ),
            None => (kube::Api::all(client.clone()), kube::Api::all(client)),
        };
        let feed = self.clone();
        let task = tokio::spawn(async move {
            use futures::StreamExt;
            let mut i = std::pin::pin!(
                reflector(iw, watcher(ia, watcher::Config::default())).default_backoff()
            );
            let mut c = std::pin::pin!(
                reflector(cw, watcher(ca, watcher::Config::default())).default_backoff()
            );
            loop {
                let more = tokio::select! {
                    e = i.next() => e.is_some(),
                    e = c.next() => e.is_some(),
                };
                if !more {
                    return;
                }
                feed.poke();
            }
        });
        let mut source = self.0.source.lock().unwrap_or_else(|p| p.into_inner());
        if source.is_some() {
            task.abort();
            return;
        }
        *source = Some(Source {
            instances,
            clusters,
            probes: None,
            own: Some(Arc::new(task.abort_handle())),
        });
    }

    #[cfg(test)]
    pub(crate) fn timeline_of(&self, cluster: &str) -> Vec<Entry> {
        self.0
            .timeline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .of(cluster)
    }

    fn source(&self) -> Option<Source> {
        self.0
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Builds one snapshot from what is in memory now. `previous` holds the ClusteredStreams as
    /// last seen, to notice publications and edge deploys.
    fn build(
        &self,
        leader: bool,
        previous: &mut HashMap<String, Arc<ClusteredStream>>,
    ) -> snapshot::Snapshot {
        let now = jiff::Timestamp::now();
        let source = self.source();
        let (clusters, instances) = match &source {
            Some(s) => (s.clusters.state(), s.instances.state()),
            None => (Vec::new(), Vec::new()),
        };
        let synced = source.as_ref().is_some_and(|s| {
            s.clusters.wait_until_ready().now_or_never().is_some()
                && s.instances.wait_until_ready().now_or_never().is_some()
        });
        {
            let mut timeline = self.0.timeline.lock().unwrap_or_else(|p| p.into_inner());
            let mut seen = HashMap::with_capacity(clusters.len());
            for c in &clusters {
                let key = format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any());
                if let Some(before) = previous.get(&key)
                    && before.resource_version() != c.resource_version()
                {
                    for entry in snapshot::status_transitions(before, c, now) {
                        timeline.record(&key, entry);
                    }
                }
                seen.insert(key, c.clone());
            }
            if synced {
                timeline.retain(|k| seen.contains_key(k));
                *previous = seen;
            }
        }
        let probes = source.as_ref().and_then(|s| s.probes.clone());
        let probe = |k: &crate::probe::InstanceKey| probes.as_ref().and_then(|p| p.health(k));
        let timeline = self.0.timeline.lock().unwrap_or_else(|p| p.into_inner());
        snapshot::build(&Inputs {
            clusters: &clusters,
            instances: &instances,
            probe: &probe,
            timeline: &timeline,
            leader,
            now,
        })
    }

    /// Starts the task that keeps the snapshot current; viewers read it from the receiver.
    pub fn start(&self, election: leader::Status) -> watch::Receiver<Frame> {
        let leader = move || matches!(election.role(), leader::Role::Leader);
        let mut previous = HashMap::new();
        let first = self.build(leader(), &mut previous);
        let (tx, rx) = watch::channel(Frame::new(
            serde_json::to_vec(&first).unwrap_or_else(|_| b"{}".to_vec()),
        ));
        let feed = self.clone();
        tokio::spawn(async move {
            let mut updates: Option<watch::Receiver<u64>> = None;
            loop {
                tokio::time::sleep(MIN_INTERVAL).await;
                if updates.is_none() {
                    updates = feed
                        .source()
                        .and_then(|s| s.probes)
                        .map(|p| p.subscribe_updates());
                }
                let probe_update = async {
                    match updates.as_mut() {
                        Some(rx) => {
                            if rx.changed().await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    () = feed.0.poke.notified() => {}
                    () = probe_update => {}
                    () = tokio::time::sleep(MAX_INTERVAL.saturating_sub(MIN_INTERVAL)) => {}
                    () = tx.closed() => return,
                }
                let snapshot = feed.build(leader(), &mut previous);
                match serde_json::to_vec(&snapshot) {
                    Ok(json) => {
                        tx.send_replace(Frame::new(json));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not serialize the dashboard snapshot")
                    }
                }
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_one_server_sent_event() {
        let f = Frame::new(br#"{"a":1}"#.to_vec());
        assert_eq!(&f.json[..], br#"{"a":1}"#);
        assert_eq!(&f.sse[..], b"event: state\ndata: {\"a\":1}\n\n");
    }

    #[tokio::test]
    async fn the_timeline_reaches_the_snapshot_and_leaves_with_its_cluster() {
        let feed = Feed::default();
        let (instances, mut iw) = kube::runtime::reflector::store::<StreamInstance>();
        let (clusters, mut cw) = kube::runtime::reflector::store::<ClusteredStream>();
        let cluster: ClusteredStream = serde_json::from_value(serde_json::json!({
            "apiVersion": "cvs.dev/v1alpha1", "kind": "ClusteredStream",
            "metadata": {"name": "ev", "namespace": "ns", "resourceVersion": "1"},
            "spec": {"stateTable": {"name": "t", "region": "us-east-1"}}
        }))
        .unwrap();
        use kube::runtime::watcher::Event;
        iw.apply_watcher_event(&Event::Init);
        iw.apply_watcher_event(&Event::InitDone);
        cw.apply_watcher_event(&Event::Init);
        cw.apply_watcher_event(&Event::InitApply(cluster.clone()));
        cw.apply_watcher_event(&Event::InitDone);
        feed.attach(instances, clusters, None);
        feed.record(
            "ns/ev",
            Entry::new(jiff::Timestamp::now(), "OpenChanged", "closed").seq(3),
        );
        let mut previous = HashMap::new();
        let snap = feed.build(true, &mut previous);
        assert_eq!(snap.clusters[0].timeline[0].event_seq, Some(3));
        // A publication seen between two snapshots is a timeline entry.
        let mut published = cluster.clone();
        published.metadata.resource_version = Some("2".into());
        published.status = Some(crate::resources::ClusteredStreamStatus {
            playlist: Some(crate::resources::PlaylistStatus {
                hash: Some("0123456789abcdef".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        cw.apply_watcher_event(&Event::Apply(published.clone()));
        let snap = feed.build(true, &mut previous);
        assert_eq!(snap.clusters[0].timeline[0].kind, "Published");
        cw.apply_watcher_event(&Event::Delete(published));
        let snap = feed.build(true, &mut previous);
        assert!(snap.clusters.is_empty());
        assert_eq!(feed.0.timeline.lock().unwrap().clusters(), 0);
    }
}
