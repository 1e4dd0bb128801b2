//! The dashboard's timeline: recent transitions of each ClusteredStream, newest first, in
//! memory and bounded. Fed by the controllers (state-table changes with their SNS sequence
//! number, the Events the operator records), by the dashboard's own actions, and by what the
//! snapshot builder sees change in the ClusteredStreams' status (publications, edge deploys).

use std::collections::{HashMap, VecDeque};

/// Entries kept per ClusteredStream (the snapshot shows them all).
pub const MAX_PER_CLUSTER: usize = 50;
/// ClusteredStreams with a timeline; the one least recently written to goes first.
pub const MAX_CLUSTERS: usize = 10_000;
/// Longest message kept, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1000;

/// One transition.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// RFC 3339 with milliseconds.
    pub at: String,
    /// The StreamInstance it concerns, if one.
    pub instance: Option<String>,
    /// `HealthChanged`, `OpenChanged`, `HealthAndOpenChanged`, `InstanceRegistered`,
    /// `Published`, `EdgeDeployed`, `DistroOpenChangedFromDashboard`, or the reason of an
    /// Event the operator recorded.
    pub kind: String,
    pub message: String,
    /// The sequence number of the SNS event that announced the change.
    pub event_seq: Option<u64>,
    /// The person who caused it (dashboard actions).
    pub user: Option<String>,
}

impl Entry {
    pub fn new(at: jiff::Timestamp, kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            at: super::snapshot::millis(at),
            instance: None,
            kind: kind.into(),
            message: crate::controller::instance::truncate(&message.into(), MAX_MESSAGE_BYTES),
            event_seq: None,
            user: None,
        }
    }

    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = Some(name.into());
        self
    }

    pub fn seq(mut self, seq: u64) -> Self {
        self.event_seq = Some(seq);
        self
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
}

/// Timelines by ClusteredStream (`namespace/name`).
#[derive(Debug, Default)]
pub struct Timeline {
    by_cluster: HashMap<String, (u64, VecDeque<Entry>)>,
    writes: u64,
}

impl Timeline {
    /// Adds `entry` to the timeline of `cluster` (`namespace/name`).
    pub fn record(&mut self, cluster: &str, entry: Entry) {
        self.writes += 1;
        if !self.by_cluster.contains_key(cluster) && self.by_cluster.len() >= MAX_CLUSTERS {
            let oldest = self
                .by_cluster
                .iter()
                .min_by_key(|(_, (w, _))| *w)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.by_cluster.remove(&k);
            }
        }
        let (written, entries) = self.by_cluster.entry(cluster.to_owned()).or_default();
        *written = self.writes;
        entries.push_front(entry);
        entries.truncate(MAX_PER_CLUSTER);
    }

    /// The timeline of `cluster`, newest first.
    pub fn of(&self, cluster: &str) -> Vec<Entry> {
        self.by_cluster
            .get(cluster)
            .map(|(_, e)| e.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets the timelines of ClusteredStreams for which `keep` is false.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.by_cluster.retain(|k, _| keep(k));
    }

    pub fn clusters(&self) -> usize {
        self.by_cluster.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_and_bounded() {
        let mut t = Timeline::default();
        let at = jiff::Timestamp::UNIX_EPOCH;
        for i in 0..(MAX_PER_CLUSTER + 10) {
            t.record(
                "ns/a",
                Entry::new(at, "HealthChanged", format!("{i}")).seq(i as u64),
            );
        }
        let a = t.of("ns/a");
        assert_eq!(a.len(), MAX_PER_CLUSTER);
        assert_eq!(a[0].message, format!("{}", MAX_PER_CLUSTER + 9));
        assert_eq!(a[0].event_seq, Some((MAX_PER_CLUSTER + 9) as u64));
        assert!(t.of("ns/b").is_empty());
        t.retain(|k| k != "ns/a");
        assert_eq!(t.clusters(), 0);
    }

    #[test]
    fn long_messages_are_cut() {
        let e = Entry::new(jiff::Timestamp::UNIX_EPOCH, "X", "é".repeat(2000));
        assert!(e.message.len() <= MAX_MESSAGE_BYTES);
        assert_eq!(e.at, "1970-01-01T00:00:00.000Z");
    }
}
